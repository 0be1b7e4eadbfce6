"""The service in headless Chromium: the reset form, the admin login, the API docs, and a front
end on another origin calling the API.

Django's test client ignores a page's referrer policy, so it cannot show what a browser sends
with a form's POST: from the reset page (no-referrer) `Origin: null` and no Referer, from the
admin (strict-origin) the origin its CSRF check needs.
"""

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from accounts import reset_tokens
from conftest import PASSWORD

NEW_PASSWORD = "a-brand-new-passphrase"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the browser tests need Chromium: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.set_page_load_timeout(30)
    yield browser
    browser.quit()


def policy_violations(browser) -> list[str]:
    """What the browser refused under the Content-Security-Policy since the last call.

    Redoc's sidebar shows its vendor's logo from their CDN; blocking it is the point.
    """
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] and "cdn.redoc.ly" not in entry["message"]
    ]


def open_link(browser, live_server, user) -> None:
    token = reset_tokens.token_issue(user=user).token
    browser.delete_all_cookies()
    policy_violations(browser)  # drop what earlier pages logged
    browser.get(f"{live_server.url}/reset-password/?token={token}")


def replaced(element):
    """A wait condition: the element's page has been replaced by the next one.

    Selenium's staleness_of expects a stale-element error; while a navigation is under way
    Chromium may answer instead that the node no longer belongs to the document.
    """

    def check(_browser) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" not in str(error):
                raise
            return True
        return False

    return check


def submit(browser, password=NEW_PASSWORD) -> str:
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.NAME, "password_confirm").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(replaced(page))
    return browser.find_element(By.TAG_NAME, "h1").text


def test_a_person_resets_their_password_from_the_emailed_link(browser, live_server, user):
    open_link(browser, live_server, user)
    # The page's own stylesheet applies under its policy (style-src 'self', nothing inline).
    main = browser.find_element(By.TAG_NAME, "main")
    assert main.value_of_css_property("max-width") == "448px"  # 28rem

    assert submit(browser) == "Password changed"
    assert policy_violations(browser) == []
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_the_reset_works_without_cookies(browser, live_server, user):
    open_link(browser, live_server, user)  # starts with the browser's cookies cleared

    assert browser.get_cookies() == []  # the page sets none, so blocking them changes nothing

    assert submit(browser) == "Password changed"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_staff_sign_in_to_the_admin(browser, live_server, make_user):
    make_user(email="admin@example.com", password=NEW_PASSWORD, is_staff=True, is_superuser=True)
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    page = browser.find_element(By.TAG_NAME, "html")
    browser.find_element(By.NAME, "username").send_keys("admin@example.com")
    browser.find_element(By.NAME, "password").send_keys(NEW_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 10).until(replaced(page))

    assert browser.find_element(By.TAG_NAME, "h1").text == "Site administration"


@pytest.mark.parametrize(
    ("path", "rendered"),
    [("/api/docs/", ".swagger-ui .info .title"), ("/api/redoc/", ".redoc-wrap .api-info h1")],
)
def test_api_docs_render_under_their_content_security_policy(browser, live_server, path, rendered):
    policy_violations(browser)  # drop what earlier pages logged
    browser.get(f"{live_server.url}{path}")

    title = WebDriverWait(browser, 20).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, rendered))
    )
    assert "auth_service" in title.text.lower()
    assert policy_violations(browser) == []


class FrontEndPage(BaseHTTPRequestHandler):
    """An empty page, served from another origin as a separate front end would be."""

    def do_GET(self):
        body = b"<!doctype html><title>front end</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def front_end():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FrontEndPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


# What a front end's script does: log in (a JSON POST: preflighted), call `me` with the bearer
# token (preflighted too), and read a refusal's status, body and headers.
FRONT_END_SCRIPT = """
const [api, email, password, done] = arguments;
const login = (secret) => fetch(api + "/api/v1/auth/login/", {
  method: "POST",
  headers: {"Content-Type": "application/json"},
  body: JSON.stringify({email: email, password: secret}),
});
(async () => {
  const pair = await (await login(password)).json();
  const me = await fetch(api + "/api/v1/auth/me/", {
    headers: {Authorization: "Bearer " + pair.access},
  });
  const stranger = await fetch(api + "/api/v1/auth/me/", {
    headers: {Authorization: "Bearer not-a-token"},
  });
  const throttled = await login("not-the-password");
  return {
    me: await me.json(),
    refused: [stranger.status, (await stranger.json()).code,
              stranger.headers.get("WWW-Authenticate")],
    throttled: [throttled.status, (await throttled.json()).code,
                throttled.headers.get("Retry-After")],
  };
})().then(done, (error) => done({error: String(error)}));
"""


def test_a_front_end_on_a_configured_origin_uses_the_api_and_reads_its_refusals(
    browser, live_server, front_end, settings, user
):
    settings.CORS_ALLOWED_ORIGINS = [front_end]
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "login_email": "1/minute"}
    browser.get(front_end)

    seen = browser.execute_async_script(FRONT_END_SCRIPT, live_server.url, user.email, PASSWORD)

    assert seen.get("error") is None
    assert seen["me"]["email"] == user.email
    assert seen["refused"] == [401, "token_invalid", 'Bearer realm="api"']
    status, code, retry_after = seen["throttled"]
    assert (status, code) == (429, "throttled")
    assert int(retry_after) > 0


def test_a_front_end_on_any_other_origin_is_refused_by_the_browser(
    browser, live_server, front_end, settings, user
):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    browser.get(front_end)

    seen = browser.execute_async_script(FRONT_END_SCRIPT, live_server.url, user.email, PASSWORD)

    assert seen == {"error": "TypeError: Failed to fetch"}
