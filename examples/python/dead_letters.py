# Lists or replays what a Millrace run moved to its dead-letter queue, millrace.RUN:dead-letters: messages its
# processes could not read (docs/broker-placement.md, "Poison messages"). Any AMQP client can do the same.
#   python3 dead_letters.py list   [amqp://guest:guest@127.0.0.1:5672/] [tutorial]
#       one line per message: the reader process, the stream, why, when, the first bytes of the body; they stay in the queue
#   python3 dead_letters.py replay [amqp://guest:guest@127.0.0.1:5672/] [tutorial]
#       each goes back to the reader's queue it came from (once the reader can read it: a fixed program, a
#       corrected body), as a message of a program outside the run; then it leaves the dead-letter queue
# Needs pika: apt-get install python3-pika
import sys
import pika
from millrace_wire import fields_and_items  # the same folder

command = sys.argv[1] if len(sys.argv) > 1 else "list"
uri = sys.argv[2] if len(sys.argv) > 2 else "amqp://guest:guest@127.0.0.1:5672/"
run = sys.argv[3] if len(sys.argv) > 3 else "tutorial"
queue = f"millrace.{run}:dead-letters"
if command not in ("list", "replay"):
    sys.exit(f"unknown command '{command}': list or replay")


def text(headers, name):
    value = (headers or {}).get(name)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


mq = pika.BlockingConnection(pika.URLParameters(uri))
ch = mq.channel()
ch.confirm_delivery()  # a replayed message leaves the dead-letter queue only once the broker has it again
count = 0
while True:
    method, props, body = ch.basic_get(queue, auto_ack=False)
    if method is None:
        break
    count += 1
    h = props.headers or {}
    try:
        fields, items = fields_and_items(props, body)
    except (IndexError, ValueError):               # moved because its envelope is bad: as it is
        fields, items = {"type": props.type}, body
    if command == "list":
        print(f"{text(h, 'millrace-poison-process')} <- {text(h, 'millrace-poison-stream')}: {text(h, 'millrace-poison-reason')} "
              f"[{text(h, 'millrace-poison-time')}] {items[:60]!r}", flush=True)
        continue                                   # not acknowledged: back in the queue when this program ends
    # In the headers form, without the writer's place in the run (it would wait for its turn for ever) and without the poison headers.
    kept = {k: v for k, v in {**fields, **h}.items()
            if v is not None and k != "type" and not k.startswith("millrace-poison-") and k not in ("millrace-writer", "millrace-seq", "millrace-generation")}
    again = pika.BasicProperties(content_type=props.content_type, type=fields.get("type"), delivery_mode=2, headers=kept,
                                 message_id=f"replay-{text(h, 'millrace-poison-message-id')}")  # a replay repeated after a crash is a copy
    ch.basic_publish("", text(h, "millrace-poison-queue"), items, again, mandatory=True)
    ch.basic_ack(method.delivery_tag)
print(f"{count} messages {'in' if command == 'list' else 'replayed from'} {queue}")
mq.close()
