"""The server's event-sourced state: commands and the registry they fold into.

Shared by both runtimes: the embedded runtime folds the log in process; in the Kafka runtime
every gateway replica folds the command topic into its own copy to answer GETs.
"""
