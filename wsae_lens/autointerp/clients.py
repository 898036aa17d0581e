"""LLM clients behind one small protocol: ``complete(messages, max_tokens) -> str``.

* ``OpenAICompatibleClient``: ``POST {base_url}/chat/completions`` (the OpenAI chat API that vLLM's and
  llama.cpp's servers and hosted APIs speak), with retries and exponential back-off, timeouts and bounded
  concurrency. Base URL, model and key default to the environment.
* ``TransformersChatClient``: a local Hugging Face causal LM with its chat template, greedy decoding,
  batched; default the embedded SmolLM2-135M-Instruct (offline, weak).

``complete_batch(conversations, max_tokens)`` returns one reply per conversation, or an ``LLMError`` in
its place when that request failed, so a batch never loses the replies that did arrive.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]
Conversation = Sequence[Message]

BASE_URL_ENV = ("WSAE_LENS_LLM_BASE_URL", "OPENAI_BASE_URL")
MODEL_ENV = ("WSAE_LENS_LLM_MODEL",)
API_KEY_ENV = ("WSAE_LENS_LLM_API_KEY", "OPENAI_API_KEY")


class LLMError(RuntimeError):
    """A request that failed for good (after retries): the reason is the message."""


@runtime_checkable
class LLMClient(Protocol):
    """What the explainer and scorers need from a language model."""

    def complete(self, messages: Conversation, max_tokens: int) -> str:
        """The assistant's reply to a chat; raises ``LLMError`` on failure."""
        ...

    def complete_batch(self, conversations: Sequence[Conversation], max_tokens: int) -> list[str | LLMError]:
        """Replies to several chats, an ``LLMError`` in place of each one that failed."""
        ...


def _validate_messages(messages: Conversation) -> None:
    if not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts.")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ValueError(f"each message needs a string 'content' and a 'role'; got {message!r}.")
        if message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"message role must be system, user or assistant; got {message.get('role')!r}.")


def _first_env(names: Sequence[str]) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


class OpenAICompatibleClient:
    """Client for any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, hosted APIs).

    Args:
        base_url: e.g. ``http://localhost:8000/v1`` (vLLM), ``http://localhost:8080/v1`` (llama.cpp),
            ``https://api.openai.com/v1``. Default: ``$WSAE_LENS_LLM_BASE_URL`` or ``$OPENAI_BASE_URL``.
        model: the served model's name. Default: ``$WSAE_LENS_LLM_MODEL``.
        api_key: sent as ``Authorization: Bearer``. Default: ``$WSAE_LENS_LLM_API_KEY`` or ``$OPENAI_API_KEY``;
            none for local servers that need none.
        timeout_s: per-request timeout (connect, read, write).
        max_retries: retries after the first attempt, on connection errors, timeouts, HTTP 429/5xx and
            unreadable replies; other HTTP errors (400, 401, 404, ...) fail at once.
        backoff_s: retry i waits ``backoff_s · 2^i`` seconds (× a random factor in [0.5, 1]; at least a
            numeric ``Retry-After``, capped at 60 s).
        max_concurrency: requests in flight at once in ``complete_batch``.
        temperature: sampling temperature (0 = greedy, as the scorers want).
        extra_body: extra JSON fields for every request (e.g. ``{"top_p": 1}``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        max_concurrency: int = 4,
        temperature: float = 0.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        import httpx

        base_url = base_url or _first_env(BASE_URL_ENV)
        model = model or _first_env(MODEL_ENV)
        if not base_url:
            raise ValueError(
                "OpenAICompatibleClient needs base_url (e.g. http://localhost:8000/v1); pass it or set "
                f"{' or '.join('$' + n for n in BASE_URL_ENV)}."
            )
        if not model:
            raise ValueError(
                "OpenAICompatibleClient needs model (the served model's name); pass it or set "
                f"${MODEL_ENV[0]}."
            )
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise ValueError("max_concurrency must be >= 1, max_retries >= 0 and timeout_s > 0.")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_concurrency = max_concurrency
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})
        api_key = api_key or _first_env(API_KEY_ENV)
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        self._httpx = httpx

    def __repr__(self) -> str:
        return f"OpenAICompatibleClient(base_url={self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        self._http.close()

    def _sleep_before_retry(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * (2**attempt) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        time.sleep(min(delay, 60.0))

    def complete(self, messages: Conversation, max_tokens: int) -> str:
        _validate_messages(messages)
        body = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            **self.extra_body,
        }
        url = f"{self.base_url}/chat/completions"
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = self._http.post(url, json=body)
            except self._httpx.TimeoutException as err:
                last_error = f"timed out ({type(err).__name__})"
            except self._httpx.TransportError as err:
                last_error = f"could not reach {url}: {type(err).__name__}: {err}"
            else:
                if response.status_code == 200:
                    try:
                        content = response.json()["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        last_error = f"unreadable reply from {url}: {response.text[:200]!r}"
                    else:
                        if isinstance(content, str):
                            return content
                        last_error = f"reply from {url} has no text content: {response.text[:200]!r}"
                elif response.status_code == 429 or response.status_code >= 500:
                    retry_after = response.headers.get("retry-after")
                    last_error = f"HTTP {response.status_code} from {url}: {response.text[:200]!r}"
                else:
                    raise LLMError(f"HTTP {response.status_code} from {url}: {response.text[:300]!r}")
            if attempt < self.max_retries:
                self._sleep_before_retry(attempt, retry_after)
        raise LLMError(f"{last_error} (after {self.max_retries + 1} attempts)")

    def complete_batch(self, conversations: Sequence[Conversation], max_tokens: int) -> list[str | LLMError]:
        def one(messages: Conversation) -> str | LLMError:
            try:
                return self.complete(messages, max_tokens)
            except LLMError as err:
                return err

        if len(conversations) <= 1 or self.max_concurrency == 1:
            return [one(m) for m in conversations]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(conversations))) as pool:
            return list(pool.map(one, conversations))


class TransformersChatClient:
    """A local Hugging Face chat model: chat template, greedy decoding, left-padded batches.

    Args:
        model: a causal LM. Default (model and tokenizer None): the embedded SmolLM2-135M-Instruct from
            ``wsae_lens.pipeline.embedded.load_embedded_hf_model``.
        tokenizer: the model's tokenizer (with a chat template).
        batch_size: conversations generated together in ``complete_batch``.
        name: the model name reported by ``OpenAICompatibleServer``.
        num_threads: torch CPU threads during generation (restored afterwards). Small-batch generation is
            latency-bound, and on a busy CPU several OpenMP threads spin against each other (measured here
            under load: 6 s with 1 thread vs 44 s with 2 for the same 16-token reply); None keeps torch's
            setting.

    Thread-safe (one generation at a time), so a server may share it between request threads.
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        batch_size: int = 8,
        name: str | None = None,
        num_threads: int | None = 1,
    ) -> None:
        if (model is None) != (tokenizer is None):
            raise ValueError("pass both model and tokenizer, or neither for the embedded SmolLM2-135M-Instruct.")
        if model is None:
            from wsae_lens.pipeline.embedded import load_embedded_hf_model

            model, tokenizer = load_embedded_hf_model()
            name = name or "SmolLM2-135M-Instruct"
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template; use an instruction-tuned (chat) model.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", None) or "local"
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TransformersChatClient(name={self.name!r})"

    def complete(self, messages: Conversation, max_tokens: int) -> str:
        result = self.complete_batch([messages], max_tokens)[0]
        if isinstance(result, LLMError):
            raise result
        return result

    def _generate(self, conversations: Sequence[Conversation], max_tokens: int) -> list[str]:
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(list(m), tokenize=False, add_generation_prompt=True)
            for m in conversations
        ]
        tokenizer = self.tokenizer
        padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
        pad_token = tokenizer.pad_token
        if pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        try:
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = padding_side
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                max_new_tokens=max_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new_tokens]

    def complete_batch(self, conversations: Sequence[Conversation], max_tokens: int) -> list[str | LLMError]:
        for messages in conversations:
            _validate_messages(messages)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}.")
        import torch

        replies: list[str | LLMError] = []
        with self._lock:
            threads = torch.get_num_threads()
            if self.num_threads is not None:
                torch.set_num_threads(self.num_threads)
            try:
                for start in range(0, len(conversations), self.batch_size):
                    chunk = conversations[start : start + self.batch_size]
                    try:
                        replies.extend(self._generate(chunk, max_tokens))
                    except (RuntimeError, ValueError) as err:  # e.g. out of memory, prompt too long
                        replies.extend(LLMError(f"local generation failed: {err}") for _ in chunk)
            finally:
                torch.set_num_threads(threads)
        return replies


def describe_client(client: Any) -> dict[str, Any]:
    """What to record about a client in results (class and model; never the key)."""
    info: dict[str, Any] = {"client": type(client).__name__}
    for attribute in ("model", "name", "base_url"):
        value = getattr(client, attribute, None)
        if isinstance(value, str):
            info[attribute] = value
    return json.loads(json.dumps(info))
