"""csipstream engine: the resolution kernel and the runtimes that drive it."""

from engine.compiled import check as _check_compiled

_check_compiled()  # an extension compiled from an older source must not shadow the new one
