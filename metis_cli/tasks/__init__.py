"""The fine-tuning tasks: what each one is conditioned on, and the inputs built for it on the fly."""
