"""The ``csip`` command line: the single entry point of csipstream."""
