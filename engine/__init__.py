"""csipstream engine: the resolution kernel and the runtimes that drive it."""
