# Reads a Millrace stream message in any of its forms (docs/broker-placement.md, "Message format").
#   from millrace_wire import fields_and_items
#   fields, items = fields_and_items(props, body)   # props: pika.BasicProperties; items: the codec's bytes


def fields_and_items(props, body):
    """A message's fields (type, millrace-writer, millrace-seq, ...) and its items."""
    if props.content_encoding not in ("mre", "millrace-envelope"):   # "mre" now, "millrace-envelope" before
        return {"type": props.type, **(props.headers or {})}, body
    if body[:4] == b"MRE2":
        return _compact(body)
    if body[:4] != b"MRE1":
        raise ValueError(f"content_encoding says {props.content_encoding}, the body does not start with MRE2 or MRE1")
    fields, at = {}, 5                                   # body[4]: how many fields
    for _ in range(body[4]):
        n = body[at]; name = body[at + 1:at + 1 + n].decode(); at += 1 + n
        v = int.from_bytes(body[at:at + 4], "little"); fields[name] = body[at + 4:at + 4 + v].decode(); at += 4 + v
    return fields, body[at:]


def _varint(body, at):                                   # LEB128: seven bits a byte, the lowest first
    value, shift = 0, 0
    while True:
        b = body[at]; at += 1; value |= (b & 0x7F) << shift; shift += 7
        if b < 0x80:
            return value, at


def _compact(body):                                      # "MRE2", kind, flags, then the fields as numbers and bytes
    kind, flags, at = body[4], body[5], 6
    fields = {} if kind == 0 else {"type": ("data", "end", "marker")[kind]}
    n, at = _varint(body, at); writer = body[at:at + n].decode(); at += n
    if writer:
        fields["millrace-writer"] = writer
    n, at = _varint(body, at); incarnation = body[at:at + n].hex(); at += n
    if n:
        place, at = _varint(body, at); fields["millrace-seq"] = f"{incarnation}:{place}"
    for bit, name in ((1, "millrace-generation"), (2, "millrace-checkpoint"), (4, "millrace-count")):
        if flags & bit:
            value, at = _varint(body, at); fields[name] = str(value)
    if flags & 8:                                        # ids: ranges of (first, eight bytes little-endian; length)
        ranges, at = _varint(body, at); parts = []
        for _ in range(ranges):
            first = int.from_bytes(body[at:at + 8], "little"); run, at = _varint(body, at + 8); parts.append(f"{first}:{run}")
        fields["millrace-ids"] = ",".join(parts)
    return fields, body[at:]
