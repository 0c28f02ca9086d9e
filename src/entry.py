from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        req = getattr(request, "js_object", request)
        v = await self.env.EDGESHELF_KV.get("hello")
        return Response(f"hi {req.url} {v!r}")
