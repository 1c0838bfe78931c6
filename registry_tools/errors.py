"""One exception type for problems the user can fix; the CLI prints it as a single line."""


class UserError(Exception):
    """Bad input or an unusable environment: reported as one line with a non-zero exit."""
