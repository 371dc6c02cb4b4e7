"""The dialog engine: YAML dialplans -> validated IR -> a sans-IO state machine, plus its async runner.

``loader.load_dialplan`` reads and validates a dialplan; ``machine.DialogMachine`` runs one call's
dialog (events in, commands out); ``runner.DialogRunner`` carries the commands out through the call
pipeline's ``CallControl``. Importing this package does not import asyncio (the runner does).
"""
