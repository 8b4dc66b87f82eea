from maskviz.cli import main

main()
