"""A driver whose import fails, as a driver with a missing dependency does."""
import fahr_this_module_does_not_exist  # noqa: F401
