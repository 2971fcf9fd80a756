"""The asyncio engine: AsyncTaskWorker and the parts it is built from."""
