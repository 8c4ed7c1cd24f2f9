from haltwatch.cli import main

main()
