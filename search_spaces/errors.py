"""The one error type for bad user input (configs, architecture strings, paths, device names, budgets)."""


class UserInputError(ValueError):
    """Input a user gave is invalid; the message names the file or key, the bad value and what is allowed."""
