# Plays the Tutorial's 'web' process from Python, through the broker: 1,000 numbers, then the end mark.
# Run the other processes with
#   dotnet run --project examples/Tutorial -c Release -- --placement broker --processes process1,process2,db
# then:  python3 web.py [amqp://guest:guest@127.0.0.1:5672/] [tutorial]      (needs pika: apt-get install python3-pika)
import json, sys
import pika

uri = sys.argv[1] if len(sys.argv) > 1 else "amqp://guest:guest@127.0.0.1:5672/"
run = sys.argv[2] if len(sys.argv) > 2 else "tutorial"
mq = pika.BlockingConnection(pika.URLParameters(uri))
ch = mq.channel()
ch.confirm_delivery()                                   # each publish waits for the broker's confirm
web = {"millrace-writer": "web"}                         # which process of the graph writes
for start in range(0, 1000, 100):                        # 100 numbers per message: a JSON array
    ch.basic_publish(f"millrace.{run}.numbers", "", json.dumps(list(range(start, start + 100))),
                     pika.BasicProperties(content_type="application/json", type="data", delivery_mode=2,
                                          message_id=f"web-{start}", headers=web))  # a copy is recognised by it
ch.basic_publish(f"millrace.{run}.numbers", "", b"",     # the end mark: 'web' has ended
                 pika.BasicProperties(type="end", delivery_mode=2, message_id="web-end", headers=web))
mq.close()
