"""The ASGI app: explicit routes around one model (an Encoder or a Reranker) and one Batcher, errors as JSON.

Every route exists on every server; a route for the other kind of model answers 400 naming the kind served and
the routes to use, before reading the body (the request is well formed, it was sent to the wrong model).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from embedrt.encoder import Encoder
from embedrt.manifest import ModelKind
from embedrt.reranker import Reranker
from embedrt.serve.batcher import Batcher, BodyBudget, Kind, Rows, TooLong, embedding_compute, input_too_long
from embedrt.serve.cohere import (
    cohere_embed_body,
    cohere_embed_request,
    cohere_prompt,
    cohere_v1_rerank_body,
    cohere_v2_rerank_body,
    cohere_v2_rerank_request,
)
from embedrt.serve.config import ServeConfig
from embedrt.serve.errors import ApiError
from embedrt.serve.metrics import Metrics
from embedrt.serve.protocol import (
    EmbedRequest,
    RerankRequest,
    cohere_rerank_request,
    openai_body,
    openai_request,
    parse_body,
    tei_body,
    tei_request,
    tei_rerank_body,
    tei_rerank_request,
    tokenize_request,
)
from embedrt.serve.request_ids import RequestIds, request_id
from embedrt.serve.rerank import (
    RerankKind,
    check_reranker,
    pair_sizes,
    pair_too_long,
    ranking,
    relevance,
    rerank_compute,
    scores_info,
)
from embedrt.serve.tei import (
    SimilarityRequest,
    cosine_to_first,
    renamed_too_long,
    similarity_request,
    similarity_too_long,
    tei_error,
    tei_info,
)
from embedrt.serve.tokens import TokenJson

log = logging.getLogger("embedrt.serve")
Handler = Callable[[Request], Awaitable[Response]]
# Answers with more floats than this are encoded off the event loop (``_encoded``). orjson writes about 25 million
# floats/s here (a one-vector answer of 384 floats: 15 us), and the hops to a thread and back cost 0.1-0.2 ms and
# contend for the GIL with the model threads: up to about 1.3 ms of encoding (85 vectors of 384, so the 32-vector
# answers of a batch load too) stays on the loop; a 2,048-vector answer (about 30 ms) does not stall it.
OFF_LOOP_VALUES = 32768
_GONE = 499  # nginx's "client closed request": counted in metrics, never sent (nobody is listening)


class _ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def create_app(model: Encoder | Reranker, config: ServeConfig, *, workers: int = 1, version: str = "") -> Starlette:
    """The server for ``model``: OpenAI's, text-embeddings-inference's and Cohere's routes, health, info, metrics.

    /v1/embeddings, /embed, /similarity, /rerank, /v1/rerank, /v2/rerank, /tokenize, /health, /info, /metrics, and
    ``/`` as text-embeddings-inference serves it (GET: health; POST: the model's route). The embedding routes
    serve an Encoder, the rerank routes a Reranker; each answers 400 on the other kind. The text-embeddings-inference
    routes answer errors in its shape and with its statuses (``embedrt.serve.tei``).

    Args:
        model: the loaded model; its session is shared by every request.
        config: limits and identity.
        workers: model cycles run at once, each on its own thread sharing the session.
        version: the embedrt version /info reports.

    """
    metrics = Metrics()
    compute = rerank_compute(model) if isinstance(model, Reranker) else embedding_compute(model)
    batcher = Batcher(
        compute, config.max_queue, config.max_wait_ms, workers, metrics.observe_cycle, config.max_queue_bytes
    )
    metrics.queue.set_function(lambda: batcher.queued_inputs)
    server = _Server(model, config, batcher, metrics, version)
    server.tei_info = tei_info(model, config, workers)

    def warm_up() -> None:
        if isinstance(model, Reranker):
            model.logits([("warm-up", "warm-up")])
        else:
            model.embed(["warm-up"])

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One real forward pass before the port opens: /health never says ok for a model that cannot run.
        await asyncio.get_running_loop().run_in_executor(None, warm_up)
        batcher.start()
        yield
        await batcher.stop()  # uvicorn has finished the requests in flight

    tei = functools.partial(server.endpoint, errors=_tei_error)  # text-embeddings-inference's error statuses
    routes = [
        Route("/v1/embeddings", server.endpoint("/v1/embeddings", server.openai), methods=["POST"]),
        Route("/embeddings", server.endpoint("/v1/embeddings", server.openai), methods=["POST"]),
        Route("/embed", tei("/embed", server.tei), methods=["POST"]),
        Route("/rerank", tei("/rerank", server.tei_rerank), methods=["POST"]),
        Route("/similarity", tei("/similarity", server.similarity), methods=["POST"]),
        Route("/", tei("/", server.tei_default), methods=["POST"]),
        Route("/v1/rerank", server.endpoint("/v1/rerank", server.cohere_rerank), methods=["POST"]),
        Route("/v2/rerank", server.endpoint("/v2/rerank", server.cohere_v2_rerank), methods=["POST"]),
        Route("/v1/embed", server.endpoint("/v1/embed", server.cohere_v1_embed), methods=["POST"]),
        Route("/v2/embed", server.endpoint("/v2/embed", server.cohere_v2_embed), methods=["POST"]),
        Route("/v1/models", server.endpoint("/v1/models", server.models), methods=["GET"]),
        Route("/tokenize", tei("/tokenize", server.tokenize), methods=["POST"]),
        Route("/health", server.endpoint("/health", server.health, auth=False), methods=["GET"]),
        Route("/", server.endpoint("/", server.health, auth=False), methods=["GET"]),  # TEI's health route too
        Route("/info", server.endpoint("/info", server.info), methods=["GET"]),
        Route("/metrics", server.endpoint("/metrics", server.metrics), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.add_middleware(RequestIds)
    app.state.stop_accepting = server.stop_accepting  # for --shutdown-delay: /health 503 while still serving
    return app


class _Server:
    """The route handlers and what they share."""

    def __init__(
        self, model: Encoder | Reranker, config: ServeConfig, batcher: Batcher, metrics: Metrics, version: str
    ) -> None:
        self.model, self.config, self.batcher, self.version = model, config, batcher, version
        self.kind = ModelKind.CROSS_ENCODER if isinstance(model, Reranker) else ModelKind.EMBEDDING
        self._metrics = metrics
        self._tokens = TokenJson(model)
        self._key = config.api_key.encode() if config.api_key is not None else None
        self.draining = False
        self.tei_info: dict[str, Any] = {}  # text-embeddings-inference's /info fields, set by create_app

    def stop_accepting(self) -> None:
        """The shutdown delay began: /health answers 503 so that load balancers stop sending traffic here."""
        self.draining = True

    def endpoint(
        self, route: str, handler: Handler, *, auth: bool = True, errors: Callable[[ApiError], Response] | None = None
    ) -> Handler:
        """Wrap a handler with the key check, error bodies (as ``errors`` writes them, else OpenAI's) and metrics."""
        write_error = errors or _error

        async def run(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if auth:
                    self._check_key(request)
                response = await handler(request)
            except ApiError as exc:
                response = write_error(exc)
            except (_ClientGone, ClientDisconnect):
                response = Response(status_code=_GONE)
            except Exception:  # a defect of ours: the id in the answer, the traceback in the log, no input
                rid = request_id(request.scope)
                log.error("internal error on %s, request id %s", route, rid, exc_info=True)
                message = f"internal server error (request id {rid})"
                response = write_error(ApiError(500, message, error_type="server_error", code=rid))
            self._metrics.observe_request(route, response.status_code, time.perf_counter() - start)
            return response

        return run

    async def openai(self, request: Request) -> Response:
        """POST /v1/embeddings."""
        encoder = self._encoder()
        req = openai_request(await self._json(request), self.config.max_inputs, encoder.dimension)
        self._check_model_name(req.model)
        embedded = await self._embed(request, req, encoder)
        model = req.model or self.config.model_name
        body = functools.partial(openai_body, embedded.values, req.encoding_format, model, sum(embedded.tokens))
        return await _encoded(body, embedded.values.size)

    async def tei(self, request: Request) -> Response:
        """POST /embed."""
        encoder = self._encoder()
        return await self._tei_embed(request, await self._json(request), encoder)

    async def _tei_embed(self, request: Request, data: dict[str, Any], encoder: Encoder) -> Response:
        req = tei_request(data, self.config.max_inputs, encoder.dimension)
        values = (await self._embed(request, req, encoder)).values
        return await _encoded(functools.partial(tei_body, values), values.size)

    async def similarity(self, request: Request) -> Response:
        """POST /similarity (text-embeddings-inference): the cosine of each sentence to the source sentence."""
        encoder = self._encoder()
        return await self._similarity(request, await self._json(request), encoder)

    async def _similarity(self, request: Request, data: dict[str, Any], encoder: Encoder) -> Response:
        req: SimilarityRequest = similarity_request(data, self.config.max_inputs)
        too_long = functools.partial(similarity_too_long, encoder.max_seq_length)
        embedded = await self._embed(request, req.embed, encoder, too_long)
        return _json(orjson.dumps(cosine_to_first(embedded.values)))

    async def tei_default(self, request: Request) -> Response:
        """POST / (text-embeddings-inference): the model's route, /rerank or /embed (or /similarity, by its body).

        On an embedder, a body whose ``inputs`` is ``{"source_sentence", "sentences"}`` (huggingface_hub's
        sentence_similarity posts to the base URL too) is a /similarity request; any other body is an /embed one.
        """
        if isinstance(self.model, Reranker):
            return await self.tei_rerank(request)
        encoder = self._encoder()
        data = await self._json(request)
        if isinstance(data.get("inputs"), dict):
            return await self._similarity(request, data, encoder)
        return await self._tei_embed(request, data, encoder)

    async def tei_rerank(self, request: Request) -> Response:
        """POST /rerank (text-embeddings-inference): ``[{"index", "score", "text"?}]``, best first."""
        reranker = self._reranker()
        req = tei_rerank_request(await self._json(request), self.config.max_inputs)
        scored = await self._rerank(request, req, reranker, "texts")
        scores = relevance(scored.values, req.raw_scores)
        texts = req.documents if req.return_documents else None
        return _json(tei_rerank_body(ranking(scores), scores, texts))

    async def cohere_rerank(self, request: Request) -> Response:
        """POST /v1/rerank (Cohere, Jina, infinity-emb): ``{"results": [...], "usage": ...}``, best first, top_n."""
        reranker = self._reranker()
        req = cohere_rerank_request(await self._json(request), self.config.max_inputs)
        self._check_model_name(req.model)
        scored = await self._rerank(request, req, reranker, "documents")
        scores = relevance(scored.values, req.raw_scores)
        order = ranking(scores)[: req.top_n]
        documents = req.documents if req.return_documents else None
        model = req.model or self.config.model_name
        rid = request_id(request.scope)
        return _json(cohere_v1_rerank_body(order, scores, documents, model, sum(scored.tokens), rid))

    async def cohere_v2_rerank(self, request: Request) -> Response:
        """POST /v2/rerank (Cohere v2): ``{"id", "results": [...], "meta"}``, best first, top_n."""
        reranker = self._reranker()
        req = cohere_v2_rerank_request(await self._json(request), self.config.max_inputs, reranker.max_length)
        self._check_model_name(req.model)
        scored = await self._rerank(request, req, reranker, "documents")
        scores = relevance(scored.values, req.raw_scores)
        order = ranking(scores)[: req.top_n]
        documents = req.documents if req.return_documents else None
        return _json(cohere_v2_rerank_body(order, scores, documents, sum(scored.tokens), request_id(request.scope)))

    async def cohere_v1_embed(self, request: Request) -> Response:
        """POST /v1/embed (Cohere v1, ``cohere.Client.embed``)."""
        return await self._cohere_embed(request, v2=False)

    async def cohere_v2_embed(self, request: Request) -> Response:
        """POST /v2/embed (Cohere v2, ``cohere.ClientV2.embed``)."""
        return await self._cohere_embed(request, v2=True)

    async def _cohere_embed(self, request: Request, *, v2: bool) -> Response:
        """Cohere's embed: ``{"id", "response_type", "embeddings", "texts", "meta"}``."""
        encoder = self._encoder()
        data = await self._json(request)
        req = cohere_embed_request(data, self.config.max_inputs, encoder.dimension, encoder.max_seq_length, v2=v2)
        self._check_model_name(req.model)
        embed = dataclasses.replace(req.embed, prompt_name=cohere_prompt(req.input_type, encoder))
        too_long = functools.partial(self._texts_too_long, encoder.max_seq_length)
        embedded = await self._embed(request, embed, encoder, too_long)
        rid = request_id(request.scope)
        body = functools.partial(cohere_embed_body, embedded.values, req, sum(embedded.tokens), rid, v2=v2)
        return await _encoded(body, embedded.values.size)

    @staticmethod
    def _texts_too_long(max_seq_length: int, index: int) -> ApiError:
        return renamed_too_long(max_seq_length, index, f"texts[{index}]", 400)  # Cohere: a 400 with truncate NONE

    async def models(self, request: Request) -> Response:
        """GET /v1/models: OpenAI's list, with the one model this server serves."""
        model = {"id": self.config.model_name, "object": "model", "created": 0, "owned_by": "embedrt"}
        return _json(orjson.dumps({"object": "list", "data": [model]}))

    async def tokenize(self, request: Request) -> Response:
        """POST /tokenize (text-embeddings-inference): each text's tokens as the model sees them, truncated.

        The answer is built on a model worker thread, its texts counted toward the queue budget meanwhile: it
        runs under the same limits as embedding them would.
        """
        texts, special = tokenize_request(await self._json(request), self.config.max_inputs)
        work = functools.partial(self._tokens.body, texts, special)
        body = await self.batcher.call(work, sum(map(len, texts)))
        await self.batcher.hold(len(body))  # tens of MB for 2,048 texts: counted until the client has them
        return _HeldBody(body, functools.partial(self.batcher.release, len(body)))

    async def health(self, request: Request) -> Response:
        """GET /health: 200 once the model ran its warm-up pass, while cycles succeed and before a shutdown."""
        if self.draining or not self.batcher.alive:
            return _json(b'{"status":"unavailable"}', 503)
        return _json(b'{"status":"ok"}')

    async def info(self, request: Request) -> Response:
        """GET /info: the model (its kind first), what runs it, the score convention of a reranker, the limits."""
        model = self.model
        about: dict[str, Any] = {"model": self.config.model_name, "model_dir": model.model_dir.name}
        if isinstance(model, Reranker):
            about |= {**model.info(), "scores": scores_info(model)}  # info() starts with the kind
        else:
            about |= {
                "kind": ModelKind.EMBEDDING.value,
                **model.info(),
                "dimension": model.dimension,
                "max_seq_length": model.max_seq_length,
            }
        about |= {"limits": self.config.limits(), "version": self.version, **self.tei_info}
        return _json(orjson.dumps(about))

    async def metrics(self, request: Request) -> Response:
        """GET /metrics: Prometheus text."""
        return Response(self._metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def _check_key(self, request: Request) -> None:
        if self._key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'", code="invalid_api_key")
        if not hmac.compare_digest(given.strip().encode(), self._key):
            raise ApiError(401, "invalid API key", code="invalid_api_key")

    async def _json(self, request: Request) -> dict[str, Any]:
        body = await _read_body(request, self.config.max_request_bytes, self.config.body_timeout_s, self.batcher)
        return parse_body(body)

    def _encoder(self) -> Encoder:
        """The embedding model, or 400 on a reranker server."""
        if not isinstance(self.model, Encoder):
            raise ApiError(
                400,
                f"this server serves a {self.kind.value} (reranker) model, which does not embed; "
                "use /rerank, /v1/rerank or /v2/rerank",
                code="wrong_model_kind",
            )
        return self.model

    def _reranker(self) -> Reranker:
        """The cross-encoder, or 400 on an embedding server or for a model with more than one label."""
        if not isinstance(self.model, Reranker):
            raise ApiError(
                400,
                f"this server serves an {self.kind.value} model, which does not rerank; use /v1/embeddings or /embed",
                code="wrong_model_kind",
            )
        check_reranker(self.model)
        return self.model

    def _check_model_name(self, name: str | None) -> None:
        if self.config.require_model_name and name not in (None, self.config.model_name):
            raise ApiError(
                404,
                f"the model {name!r} does not exist; this server serves {self.config.model_name!r}",
                param="model",
                code="model_not_found",
            )

    async def _embed(
        self, request: Request, req: EmbedRequest, encoder: Encoder, too_long: TooLong | None = None
    ) -> Rows:
        """Queue the texts; with truncate false, a text too long is a 413 naming ``inputs[i]`` (or ``too_long``'s)."""
        prompt = self._prompt(req.prompt_name, encoder)
        try:
            encoder.check_truncation(prompt, req.truncation)
        except ValueError as exc:
            raise ApiError(400, f"'truncation_direction': {exc}", param="truncation_direction") from None
        kind = Kind(prompt, req.normalize, req.dimensions, req.truncation)
        too_long = too_long or functools.partial(input_too_long, encoder.max_seq_length)
        return await self._queue(request, req.texts, kind, None if req.truncate else too_long)

    async def _rerank(self, request: Request, req: RerankRequest, reranker: Reranker, param: str) -> Rows:
        """Queue the (query, document) pairs; with truncate false, a pair too long is a 413 naming ``param[i]``.

        The query is checked and tokenized once for all its pairs (only as far as truncation can need).
        """
        make_query = functools.partial(reranker.query, req.query, req.truncation)
        query = await asyncio.get_running_loop().run_in_executor(None, make_query)
        pairs = [(query, document) for document in req.documents]
        too_long = (
            None
            if req.truncate
            else functools.partial(pair_too_long, param, reranker.max_length, specials=reranker.pair_special_tokens)
        )
        sizes = pair_sizes(req.query, req.documents)
        return await self._queue(request, pairs, RerankKind(req.truncation), too_long, sizes)

    async def _queue(
        self,
        request: Request,
        items: Sequence[Any],
        kind: Hashable,
        too_long: TooLong | None,
        sizes: list[int] | None = None,
    ) -> Rows:
        """Queue the items; drop them when the client disconnects first."""
        rows = self.batcher.submit(items, kind, too_long, sizes)
        gone = asyncio.ensure_future(_disconnected(request))
        # Awaiting the rows' future itself (no task around it, no asyncio.wait) wakes this handler in the loop turn
        # that completes it; a disconnect cancels it instead, and the batcher skips its queued texts.
        gone.add_done_callback(functools.partial(_drop, rows))
        try:
            return await rows
        except asyncio.CancelledError:
            if gone.done() and not gone.cancelled():
                raise _ClientGone from None
            raise
        finally:
            gone.cancel()

    def _prompt(self, name: str | None, encoder: Encoder) -> str:
        try:
            return encoder.resolve_prompt(name)
        except ValueError as exc:
            raise ApiError(400, f"'prompt_name': {exc}", param="prompt_name") from None


async def _read_body(request: Request, limit: int, timeout: float, budget: Batcher) -> bytes:
    """The body, refused with 413 as soon as it is known to pass ``limit`` (before reading it when declared).

    Its bytes count toward the queue's budget as they arrive (``Batcher.body``), so that many large bodies being
    read at once cannot hold more memory than the queue may.
    """
    declared = request.headers.get("content-length")
    length = int(declared) if declared is not None and declared.isdigit() else None
    if length is not None and length > limit:
        raise ApiError(
            413,
            f"the body is {declared} bytes; the limit is {limit}",
            code="body_too_large",
            headers={"Connection": "close"},
        )
    chunks: list[bytes] = []
    size = 0

    async def read(share: BodyBudget) -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(
                    413,
                    f"the body passes the limit of {limit} bytes",
                    code="body_too_large",
                    headers={"Connection": "close"},
                )
            await share.arrived(len(chunk))
            chunks.append(chunk)

    async with budget.body() as share:  # released once read: the texts count again once queued
        try:
            await _within(read(share), timeout)
        except (TimeoutError, asyncio.TimeoutError):  # the same class from 3.11; apart on 3.10
            raise ApiError(
                408, f"the body did not arrive within {timeout:g} s", code="timeout", headers={"Connection": "close"}
            ) from None
    return b"".join(chunks)


async def _within(work: Coroutine[Any, Any, None], seconds: float) -> None:
    """Await ``work``, cancelled with TimeoutError after ``seconds``.

    ``asyncio.timeout`` (3.11 on) runs it in this task; ``asyncio.wait_for`` (3.10) wraps it in a task of its
    own, which costs every request a turn of the loop.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            await work
    else:
        await asyncio.wait_for(work, seconds)


def _drop(rows: asyncio.Future[Rows], gone: asyncio.Future[None]) -> None:
    """The client went away (``gone`` finished): cancel its rows, unless they are ready or it was the server."""
    if not gone.cancelled():
        rows.cancel()


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (the body has been read: the next message can only be a disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _HeldBody(Response):
    """A large JSON answer sent in 1 MB chunks, each after the client has taken the previous ones (flow control).

    ``release`` runs once it is out (or the client is gone), so its bytes count toward the queue budget until then.
    """

    CHUNK = 1 << 20

    def __init__(self, body: bytes, release: Callable[[], None]) -> None:
        super().__init__(None, media_type="application/json")
        self._body, self._release = body, release
        self.headers["content-length"] = str(len(body))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Send the head, then the body chunk by chunk; release the held bytes whatever happens."""
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            view = memoryview(self._body)
            for start in range(0, len(view), self.CHUNK):
                await send({"type": "http.response.body", "body": view[start : start + self.CHUNK], "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._release()


async def _encoded(body: Callable[[], bytes], values: int) -> Response:
    """The JSON answer ``body`` writes, on the event loop or, past ``OFF_LOOP_VALUES`` floats, on a thread.

    A large answer encoded on the loop would stall every other request meanwhile (``float_rows`` lets the loop in).
    """
    if values <= OFF_LOOP_VALUES:
        return _json(body())
    return _json(await asyncio.get_running_loop().run_in_executor(None, body))


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error(exc: ApiError) -> Response:
    response = _json(orjson.dumps(exc.body()), exc.status)
    response.headers.update(exc.headers)
    return response


def _tei_error(exc: ApiError) -> Response:
    """An error on a text-embeddings-inference route: its status and ``{"error", "error_type", ...}`` body."""
    status, body = tei_error(exc)
    response = _json(orjson.dumps(body), status)
    response.headers.update(exc.headers)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and methods: the same JSON error body as everything else."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return _error(ApiError(status, message.get(status, "request refused"), code="not_found" if status == 404 else None))
