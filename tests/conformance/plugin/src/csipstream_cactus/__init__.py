"""cactus-client admin plugin: CACTUS admin instructions onto csipstream's admin API."""
