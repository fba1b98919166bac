"""The agent's HTTP face: supervisord's [unix_http_server] and [inet_http_server]."""
