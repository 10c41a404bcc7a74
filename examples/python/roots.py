# Watches the Tutorial's stream 'roots' from Python as it flows, with a queue of its own on the
# stream's exchange, until the writer's end mark; prints how many items and their sum.
#   python3 roots.py [amqp://guest:guest@127.0.0.1:5672/] [tutorial]          (needs pika: apt-get install python3-pika)
import json, sys
import pika
from millrace_wire import fields_and_items  # the same folder

uri = sys.argv[1] if len(sys.argv) > 1 else "amqp://guest:guest@127.0.0.1:5672/"
run = sys.argv[2] if len(sys.argv) > 2 else "tutorial"
mq = pika.BlockingConnection(pika.URLParameters(uri))
ch = mq.channel()
q = ch.queue_declare("", exclusive=True).method.queue
ch.queue_bind(q, f"millrace.{run}.roots")
print("watching", flush=True)
items, total = 0, 0.0
for method, props, body in ch.consume(q, auto_ack=True, inactivity_timeout=60):
    if method is None:
        break
    fields, payload = fields_and_items(props, body)
    if fields.get("type") == "end":
        break
    batch = json.loads(payload)                            # a JSON array of numbers
    items += len(batch)
    total += sum(batch)
print(f"roots: {items} items, sum {total:.0f}")
mq.close()
