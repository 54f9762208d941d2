"""Vehicle-to-vehicle bus: ZeroMQ PUB/SUB, versioned msgpack schema (docs/v2v_schema.md), CURVE keys bound
to car ids, delay/drop injection for sim and bus, clock offsets, and the neighbour table the shield reads."""
