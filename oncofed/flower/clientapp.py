"""The ClientApp a centre's SuperNode runs (docs/flower.md). It finds its node directory in the
SuperNode's node config and answers through the node's one pipeline:

    flower-supernode … --node-config 'node-dir="/srv/oncofed/centre-a"'

Each message opens the node, hands the signed bytes to `oncofed.node.federated`, and closes it
again: on Flower's deployment engine every message starts a fresh ClientApp process (≈ 2.3 s
alone), so this module imports only Flower's app classes and the node (no pandas, statsmodels,
scipy or plotting) and keeps nothing between messages that the node's store does not keep.

A message that is not ours, or a node that cannot open (no identity key, a broken node.toml),
raises: Flower turns it into an error reply and the ServerApp fails the run with the centre's
name. A refusal of a well-formed request is a *signed* decline or failure, carrying a coarse
code only; the reason is in the centre's audit log. So is an error inside the participant: Flower
sends an exception's text to the ServerApp, so none may rise from answering (D28).
"""

from __future__ import annotations

import os
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from oncofed.errors import NodeError
from oncofed.flower import messages
from oncofed.node.federated import FlowerParticipant

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

NODE_DIR_KEY = "node-dir"

app = ClientApp()


def handle(msg: Message, node_dir: Path) -> Message:
    """Answer one message of the ServerApp for the node in `node_dir`."""
    step = messages.step_of(msg.content)
    with FlowerParticipant.open(node_dir) as participant:
        if step == messages.PREPARE:
            reply = participant.prepare(messages.read_prepare(msg.content))
        else:
            req = messages.read_round(msg.content)
            reply = participant.answer_round(req.query_hash, req.round, req.beta, req.accepts, offset=req.offset)
    return Message(messages.reply_content(reply.kind, reply.data), reply_to=msg)


def node_dir_of(context: Context) -> Path:
    """The node directory the SuperNode's operator configured (never the run config: a run
    cannot choose which centre's data answers it)."""
    value = context.node_config.get(NODE_DIR_KEY)
    if not isinstance(value, str) or not value:
        raise NodeError(f"the SuperNode has no {NODE_DIR_KEY!r} in its node config "
                        f"(flower-supernode --node-config '{NODE_DIR_KEY}=\"/path/to/node\"')")
    return Path(value)


@app.query()
def query(msg: Message, context: Context) -> Message:
    return handle(msg, node_dir_of(context))
