"""Errors the kernel raises for inputs it refuses. Nothing is changed when one is raised."""


class InvalidInput(ValueError):
    """An input that breaks a rule of its own shape (unknown mode, bad range, unknown program)."""


class TimeWentBackwards(ValueError):
    """An input or an advance to an instant before the kernel's current one."""
