from simplane.cli.main import main

main()
