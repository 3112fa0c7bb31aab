"""Click commands that live outside edgerec/cli.py; cli.py registers them on its group."""
