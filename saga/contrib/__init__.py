"""Integrations with web frameworks, each imported only when asked for.

`import saga` imports none of them, and none of them is needed to use saga from a web
app: they only save the few lines that hand a framework's own connection to the API.
"""
