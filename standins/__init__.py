"""Local stand-ins for what the crawler talks to: Gmail IMAP, Google's token endpoint, MongoDB.

Imported by tests, the demo and benchmarks only, never by production code paths. The fakes never
import the crawler's own protocol code (`crawler.gmail`, `crawler.mime`): a fake that shares the
crawler's parser shares its bugs.
"""
