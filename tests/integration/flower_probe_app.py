"""A tiny real Flower app for the deployment tests, shipped inside the FAB as `probe_app.py`: the
ServerApp asks every node for the number in its node config ("value") and writes the sum and the
node directories it was told to `out`; `fail = true` makes the ServerApp raise, to prove a failed
run is reported as failed. Flower's own Message API, nothing of oncofed's."""

import json
import time

from flwr.app import Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

client = ClientApp()
server = ServerApp()


@client.query()
def answer(msg: Message, context: Context) -> Message:
    value = float(context.node_config["value"])
    dirs = str(context.node_config["node-dir"])
    return Message(RecordDict({"m": MetricRecord({"v": value, "len": float(len(dirs))})}), reply_to=msg)


@server.main()
def main(grid: Grid, context: Context) -> None:
    if context.run_config["fail"]:
        raise RuntimeError("the probe was asked to fail")
    want = int(context.run_config["nodes"])
    deadline = time.time() + 60
    while len(ids := list(grid.get_node_ids())) < want and time.time() < deadline:
        time.sleep(0.2)
    msgs = [Message(RecordDict({"m": MetricRecord({"x": 1.0})}), dst_node_id=n, message_type=MessageType.QUERY)
            for n in ids]
    replies = list(grid.send_and_receive(msgs, timeout=60))
    good = [r for r in replies if not r.has_error()]
    with open(str(context.run_config["out"]), "w") as fh:
        json.dump({"sum": sum(r.content["m"]["v"] for r in good), "replies": len(good), "nodes": len(ids)}, fh)
