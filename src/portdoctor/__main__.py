"""`python -m portdoctor`."""

from portdoctor.cli import main

if __name__ == "__main__":
    main()
