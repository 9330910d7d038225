"""Real-process test support: network namespaces, BIRD and GoBGP peers, raw BGP capture.

Used by the integration and interop tests (``tests/integration``); nothing here is imported by
the product. ``netns`` owns namespaces, links, processes and teardown; ``bird`` and ``gobgp``
wrap the two reference BGP implementations; ``capture`` records the messages they send.
"""
