"""Device telemetry in plain values: what a mirrored reading measures, and what an alarm means.

Pure Python with no I/O and no XML, so the gateway (which parses the 2030.5 bodies), the
runtimes (which publish telemetry records) and a data team's notebooks share one vocabulary:
``quantities`` names a reading from its ReadingType codes, ``alarms`` names a DER LogEvent.
"""
