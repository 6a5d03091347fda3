"""Local stand-ins for what the crawler talks to: Gmail IMAP, Google's token endpoint, MongoDB,
Redis.

A package of its own beside `crawler`, with its own extra (`pip install
'gmail-attachment-crawler[standins]'`: mongomock, mockupdb, fakeredis with Lua). Imported by
tests, the demo, benchmarks, the chaos run and the CLI commands that serve a stand-in, never by
the crawler's production code paths. The fakes never import the crawler's own protocol code
(`crawler.gmail`, `crawler.mime`): a fake that shares the crawler's parser shares its bugs. From
`crawler` they use `crawler.oauth.TokenCipher` only, to store the fake accounts' tokens as the
crawler stores them.
"""
