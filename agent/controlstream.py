"""The subscriber side of the control socket: noticing that an event-stream client has gone.

A subscriber sends nothing after `subscribe`, so the server learns that it left only from the
socket. Split from control.py, which serves requests and hands subscribers to the event bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import select

from agent.events import Subscription

HANGUP_POLL_S = 1.0  # how often a half-closed subscriber is checked for a full close


async def until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sub: Subscription) -> None:
    """Close `sub` when the client closes the connection; what it sends is ignored.

    End of input alone is not a close: `printf '{"cmd":"subscribe"}\\n' | socat - UNIX:...`
    shuts its sending side and keeps reading. After it, a hang-up (POLLHUP) means the client is
    gone, so an idle daemon does not keep dead subscribers until its next event.
    """
    with contextlib.suppress(Exception):
        while await reader.read(4096):
            pass
    sock = writer.get_extra_info("socket")
    fd = sock.fileno() if sock is not None else -1
    while fd >= 0 and not sub.closed:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0)):
            break
        await asyncio.sleep(HANGUP_POLL_S)
    sub.close()
