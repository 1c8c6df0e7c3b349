"""Drives longlink_push.Client for demo-push/tests/python_client.rs: connects, then
answers commands read from stdin, one JSON object per line, and prints what it sees as
JSON lines.

    {"cmd": "recv"}                 -> the next message from the room
    {"cmd": "ack", "ids": [..]}
    {"cmd": "heartbeat"}            -> sends one; `recv` shows the reply
    {"cmd": "upstream", "app": .., "type": .., "body": ..}
"""

import json
import sys

import longlink_push as lp
from google.protobuf import json_format


def out(**fields):
    print(json.dumps(fields), flush=True)


def main(center, uid, token):
    client = lp.Client(center, uid, token)
    out(event="connected", heartbeat_secs=client.heartbeat_secs, session=client.session)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "recv":
            op, seq, message = client.recv()
            fields = json_format.MessageToDict(message, preserving_proto_field_name=True)
            if op == lp.pb.OP_MESSAGE:
                fields["body"] = message.body.decode()
            out(event="frame", op=lp.pb.Op.Name(op), seq=seq, message=fields)
        elif cmd["cmd"] == "ack":
            out(event="sent", seq=client.ack(*cmd["ids"]))
        elif cmd["cmd"] == "heartbeat":
            out(event="sent", seq=client.heartbeat())
        elif cmd["cmd"] == "upstream":
            seq = client.upstream(cmd["app"], cmd["type"], cmd["body"].encode())
            out(event="sent", seq=seq)
    client.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
