"""Recordings: a monitor's ledger inputs written down, read back and replayed.

``HeartMonitor(..., record=...)`` takes a path or a :class:`RecordingFile` (to set its
rotation); :func:`read` turns a file's bytes back into a :class:`Recording` of the ledger's
inputs, and :func:`replay` feeds them to a ledger under any rules: the failures and false
failures it would have made, as a :class:`Replayed`. ``greenheart tune`` is built on them.
Importing this loads no gevent.
"""

from __future__ import annotations

from greenheart.core.recording import Header, Recording, read
from greenheart.core.replay import Replayed, replay
from greenheart.green.recording import RecordingFile

__all__ = ["Header", "Recording", "RecordingFile", "Replayed", "read", "replay"]
