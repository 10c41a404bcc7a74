# Reads a Millrace stream message in either of its forms (docs/broker-placement.md, "Message format").
#   from millrace_wire import fields_and_items
#   fields, items = fields_and_items(props, body)   # props: pika.BasicProperties; items: the codec's bytes


def fields_and_items(props, body):
    """A message's fields (type, millrace-writer, millrace-seq, ...) and its items."""
    if props.content_encoding != "millrace-envelope":
        return {"type": props.type, **(props.headers or {})}, body
    if body[:4] != b"MRE1":
        raise ValueError("content_encoding says millrace-envelope, the body does not start with MRE1")
    fields, at = {}, 5                                   # body[4]: how many fields
    for _ in range(body[4]):
        n = body[at]; name = body[at + 1:at + 1 + n].decode(); at += 1 + n
        v = int.from_bytes(body[at:at + 4], "little"); fields[name] = body[at + 4:at + 4 + v].decode(); at += 4 + v
    return fields, body[at:]
