"""The HTTP edge: the app (`app`), its core (`core`: keys, the error map, bodies, the hot
paths), the connection guard (`guard`), the OpenAPI shapes (`schemas`) and MCP over HTTP (`mcp`)."""
