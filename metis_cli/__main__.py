from metis_cli.cli import main

main()
