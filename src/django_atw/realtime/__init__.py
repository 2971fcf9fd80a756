"""Live task progress over Channels: group names, events, the relay and the task socket.

- ``groups``: every channel-layer group name and message type (nothing else spells one).
- ``layer``: the configured channel layer, and whether it reaches other processes.
- ``payloads``: the task object and event message sent to clients.
- ``publisher``: a worker's ``EventPublisher``; ``publish_tasks`` for changes outside workers.
- ``relay``: the web process's ``Relay`` of changes read from the database.
- ``protocol``: the socket's requests and replies; ``consumers``: ``TaskConsumer``;
  ``routing``: ``websocket_urlpatterns``.

Nothing is imported here: ``django_atw.wakeup`` imports ``groups`` and must not pull in the
rest, and ``consumers`` needs Channels, which is optional.
"""
