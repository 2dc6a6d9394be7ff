"""The topic catalog (``topics.catalog``): every topic's name, key, schema and retention."""
