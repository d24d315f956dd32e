"""Using trained models: mask-predict decoding, SSL-token and codec-code generation, resynthesis."""
