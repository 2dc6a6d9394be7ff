"""The topic catalog (``topics.catalog``): every topic's name, key, schema and retention."""

import engine  # noqa: F401  (refuses a compiled topics.partition older than its source)
