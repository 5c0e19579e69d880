"""Signing in to the console through a workspace's own identity provider, with OpenID Connect.

An admin names the provider (``config``); a person names their workspace and is sent there with PKCE, a
``state`` and a ``nonce`` (``sign_in``); the code comes back and is exchanged through Authlib's client
(``token_exchange``); the ID token is checked against the provider's published keys (``id_token``, with the
provider's discovery document and keys from ``provider``); and the e-mail it vouches for names the person
(``people``). What the browser must carry between the two legs is the front end's to keep.
"""
