"""In-place re-exec of the agent (as systemd's daemon-reexec): the children keep running.

`state` owns the versioned handoff file; `handoff` the descriptor and exec mechanics;
`capture` and `adopt` move the core's runtime into and out of that file.
"""
