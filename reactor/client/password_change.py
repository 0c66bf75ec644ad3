"""The ``password`` command's dialogue: the current password and the new one twice, then one frame to the server.

Each of the three is asked at a secret prompt (``Prompt(secret=True)``, as the
login's password): never echoed, never in the input history, never shown as a
draft. The client checks what it can itself: the two new ones must be the
same; an empty line (or Ctrl-C, ``ChatClient.ctrl_c``) gives up. The server
checks the rest (the current password, the rule for a new one) and answers
with ``password_changed`` or an error; it answers after checking and hashing
off its loop, so the client sends no ping after the frame and the next typed
line waits for that answer instead (``answered``).
"""
from __future__ import annotations

from ..protocol import ErrorCode, FrameType
from .effects import ClientEffect, Print, Prompt, ToServer
from .words import CURRENT_PASSWORD_PROMPT, NEW_PASSWORD_AGAIN_PROMPT, NEW_PASSWORD_PROMPT, SAY

__all__ = ["PasswordChange", "ANSWERS"]

PROMPTS = (Prompt(CURRENT_PASSWORD_PROMPT, secret=True), Prompt(NEW_PASSWORD_PROMPT, secret=True),
           Prompt(NEW_PASSWORD_AGAIN_PROMPT, secret=True))
COMMAND_PROMPT = Prompt("", remember=True)
# What answers a change: its frame (None), or an error of these codes (bad_frame: a server that knows no change).
ANSWERS = frozenset({None, ErrorCode.WRONG_PASSWORD, ErrorCode.PASSWORD_REFUSED, ErrorCode.PASSWORD_UNCHANGEABLE,
                     ErrorCode.PASSWORD_NOT_CHANGED, ErrorCode.ACCOUNT_CHANGED, ErrorCode.BAD_FRAME})


class PasswordChange:
    """The dialogue under way (``asking``), and whether its frame awaits the server's answer (``awaiting``)."""

    def __init__(self) -> None:
        self._typed: list[str] | None = None   # the passwords typed so far, while asking
        self.awaiting = False

    @property
    def asking(self) -> bool:
        """Whether the next typed line is one of the dialogue's passwords."""
        return self._typed is not None

    def begin(self) -> list[ClientEffect]:
        """The ``password`` command: ask for the current password."""
        self._typed = []
        return [PROMPTS[0]]

    def take(self, line: str) -> list[ClientEffect]:
        """One line typed at the dialogue's prompt: the next prompt, or the frame for the server."""
        typed = self._typed
        assert typed is not None
        if not line:
            return self.cancel()
        typed.append(line)
        if len(typed) < len(PROMPTS):
            return [PROMPTS[len(typed)]]
        self._typed = None
        current, new, again = typed
        if new != again:
            return [Print(SAY("passwords_differ")), COMMAND_PROMPT]
        self.awaiting = True
        return [ToServer({"type": FrameType.CHANGE_PASSWORD, "current": current, "new": new}), COMMAND_PROMPT]

    def cancel(self) -> list[ClientEffect]:
        """Give up the dialogue (an empty line, Ctrl-C): nothing is sent."""
        self._typed = None
        return [Print(SAY("password_kept")), COMMAND_PROMPT]

    def answered(self, code: str | None) -> bool:
        """A ``password_changed`` (``code`` None) or an error with ``code`` came: whether it answers the change
        sent (then the next typed line may go)."""
        if not self.awaiting or code not in ANSWERS:
            return False
        self.awaiting = False
        return True
