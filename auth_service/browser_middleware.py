"""Session, user and message middleware for the pages a browser uses, skipped on /api/.

The JSON API authenticates with bearer tokens, so sessions, the cookie user and flash messages
mean nothing there, and these three middleware were a tenth of a `me` request's CPU. The admin
and the reset page keep them. Subclasses, not a separate stack, so Django's admin checks still
find them. CSRF middleware stays as Django ships it (`check --deploy` looks for it by name).
"""

from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions

API_PREFIX = "/api/"


class _BrowserOnly:
    def __call__(self, request):
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_BrowserOnly, sessions.SessionMiddleware):
    pass


class AuthenticationMiddleware(_BrowserOnly, auth.AuthenticationMiddleware):
    pass


class MessageMiddleware(_BrowserOnly, messages.MessageMiddleware):
    pass
