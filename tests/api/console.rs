//! The console (`/console`) in a real headless Chromium, driven as a person would (typing,
//! clicking, waiting for what the page shows, never reloading): a merchant signs up, logs in,
//! creates a key and reads its token once, is paid through it by the official x402 client, sees
//! the settlement confirmed, pauses the key and sees the next payment refused; an operator sees
//! a frozen RPC endpoint turn unhealthy and a signer below its floor flagged. Markup in titles
//! shows as text, and every console answer carries the security headers. Each view is
//! photographed at 1280 px and 390 px into `target/ci-artifacts/`.

use alloy::primitives::U256;
use devnet::{Devnet, DevnetOptions};
use serde_json::{json, Value};

use crate::cdp::Browser;
use crate::chain_helpers::ChainApp;
use crate::helpers::*;
use crate::replay::{e2e_state, node, write_state, E2E_PAY_TO, E2E_PRICE};
use crate::rpc_faults::signed;
use crate::tcp_proxy::TcpProxy;

const EXPLORER: &str = "https://sepolia.basescan.org";
/// Markup a title may hold; it must show as these characters, and run nothing.
const MARKUP: &str =
    "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script><b>bold</b>";

/// The headers every console answer carries.
fn assert_console_headers(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    let csp = h
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"))
        .to_str()
        .unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{what}: CSP {csp} lacks {part}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
}

/// A JavaScript string literal.
fn js(s: &str) -> String {
    Value::from(s).to_string()
}

/// Wait for the view `name` to be shown and filled once.
async fn open_view(browser: &mut Browser, name: &str) {
    browser.click(&format!("#nav a[data-view={name}]")).await;
    browser
        .wait_for(
            &format!("document.getElementById('view-{name}') !== null && !document.querySelector('#flash .error')"),
            &format!("the {name} view"),
        )
        .await;
}

#[actix_web::test]
async fn console_answers_carry_the_security_headers_and_show_markup_as_text() {
    // Access tokens live 3 s: the console must refresh them as it goes (the API calls here
    // log in again before each step).
    let app = TestApp::spawn_on(
        TestDb::create(Db::Sqlite).await,
        json!({ "auth": { "access_token_ttl_secs": 3 } }),
    )
    .await;

    // Every console answer: the redirect, the page, each of its files, a 404 under it.
    let res = app.get("/console", None).await;
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "console/");
    assert_console_headers(&res, "/console");
    let res = app.get("/console/", None).await;
    assert_eq!(res.status(), 200);
    assert_console_headers(&res, "/console/");
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script: {html}");
    for scheme in ["http://", "https://"] {
        assert!(!html.contains(scheme), "the page names a host: {html}");
    }
    for name in x402_facilitator::routes::console::asset_names() {
        let res = app.get(&format!("/console/{name}"), None).await;
        assert_eq!(res.status(), 200, "{name}");
        assert_console_headers(&res, name);
        let body = res.text().await.unwrap();
        assert!(!body.is_empty(), "{name}");
        if name.ends_with(".js") {
            assert!(!body.contains("innerHTML"), "{name} writes markup");
            assert!(!body.contains("eval("), "{name} evaluates code");
            // Nothing fetched or imported from another host (the SVG namespace is a name).
            let body = body.replace("'http://www.w3.org/2000/svg'", "");
            for scheme in ["http://", "https://"] {
                assert!(!body.contains(scheme), "{name} names a host");
            }
        }
    }
    for path in ["/console/nope.js", "/console/a/b"] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_console_headers(&res, path);
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "NOT_FOUND");
    }
    let res = app
        .request(reqwest::Method::POST, "/console/app.js", None, None)
        .await;
    assert_eq!(res.status(), 405);
    assert_console_headers(&res, "POST /console/app.js");

    // The operator's reads take the admin token, and nothing else.
    let (access, _, user_id) = app.user("xss@example.com").await;
    for path in [
        "/admin/fleet".to_owned(),
        "/admin/settlements".to_owned(),
        format!("/admin/users/{user_id}/clients"),
    ] {
        assert_error(app.get(&path, None).await, 401, "UNAUTHORIZED", None).await;
        assert_error(
            app.get(&path, Some(&access)).await,
            401,
            "UNAUTHORIZED",
            None,
        )
        .await;
        let res = app.get(&path, Some(ADMIN_TOKEN)).await;
        assert_eq!(res.status(), 200, "{path}");
    }
    let fleet: Value = app
        .get("/admin/fleet", Some(ADMIN_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let this: Vec<&Value> = fleet["data"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["this"] == true)
        .collect();
    assert_eq!(this.len(), 1, "{fleet}");
    assert_eq!(this[0]["live"], true, "{fleet}");
    assert_error(
        app.get("/admin/users/999999/clients", Some(ADMIN_TOKEN))
            .await,
        404,
        "NOT_FOUND",
        None,
    )
    .await;
    // An account's settlements: its own token, valid filters.
    let access = app.login("xss@example.com").await;
    assert_error(
        app.get("/api/v1/users/settlements", None).await,
        401,
        "UNAUTHORIZED",
        None,
    )
    .await;
    for bad in [
        "tx=0x12",
        "payer=nope",
        "nonce=0xzz",
        "network=moon",
        "limit=0",
        "limit=201",
        "color=red",
    ] {
        assert_error(
            app.get(&format!("/api/v1/users/settlements?{bad}"), Some(&access))
                .await,
            400,
            "INVALID_REQUEST",
            None,
        )
        .await;
    }

    // A key and a resource titled with markup, made through the API.
    let access = app.login("xss@example.com").await;
    app.client_key_with(&access, json!({ "title": MARKUP }))
        .await;
    let res = app
        .post(
            "/api/v1/resources",
            Some(&access),
            json!({
                "resource": "https://api.example.com/paid",
                "type": "http",
                "x402Version": 1,
                "accepts": [{ "scheme": "exact", "network": "base-sepolia",
                    "maxAmountRequired": "10000", "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                    "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C" }],
                "metadata": { "title": MARKUP, "description": MARKUP },
            }),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());

    let mut browser = Browser::launch().await;
    browser.goto(&app.url("/console/")).await;
    browser.type_into("#login-email", "xss@example.com").await;
    browser.type_into("#login-password", PASSWORD).await;
    browser.click("#login-submit").await;
    browser
        .wait_for(
            "document.querySelector('#keys-table .key-title') !== null",
            "the keys table",
        )
        .await;
    let shown = browser
        .eval("document.querySelector('#keys-table .key-title').textContent")
        .await;
    assert_eq!(shown, MARKUP, "the key's title shows as text");
    open_view(&mut browser, "resources").await;
    let shown = browser
        .wait_for(
            "document.querySelector('#resources-table .resource-title')?.textContent",
            "the resources table",
        )
        .await;
    assert_eq!(shown, MARKUP, "the resource's title shows as text");
    // Nothing ran, and no element came out of the markup.
    assert_eq!(browser.eval("window.__xss === undefined").await, true);
    assert_eq!(
        browser
            .eval("document.querySelectorAll('main img, main b, main script').length")
            .await,
        0
    );
    // The access token is in this tab's session storage only, never in the address.
    let url = browser.eval("location.href").await;
    let token = browser
        .eval("sessionStorage.getItem('x402console.access')")
        .await;
    let token = token.as_str().unwrap().to_owned();
    assert!(!url.as_str().unwrap().contains(&token[..20]), "{url}");

    // Past the token's life the live updates go on: refreshed (rotating), no error shown.
    browser
        .wait_for(
            &format!(
                "sessionStorage.getItem('x402console.access') !== {} && \
                 sessionStorage.getItem('x402console.refresh') !== null",
                js(&token)
            ),
            "the access token refreshed",
        )
        .await;
    open_view(&mut browser, "keys").await;
    browser
        .wait_for(
            "document.querySelector('#keys-table .key-title') !== null",
            "the keys, with the new token",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#flash .error') === null")
            .await,
        true
    );
    // The old one no longer works, and was never put in the page's address.
    assert_error(
        app.get("/api/v1/clients", Some(&token)).await,
        401,
        "UNAUTHORIZED",
        None,
    )
    .await;
}

#[actix_web::test]
async fn a_merchant_is_paid_through_a_key_made_in_the_console_and_pauses_it() {
    let devnet = Devnet::start(DevnetOptions::default())
        .await
        .expect("devnet");
    let app = ChainApp::start_app_full(
        TestDb::create(Db::Sqlite).await,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({ "explorer_url": EXPLORER }),
        json!({}),
    )
    .await;
    let mut browser = Browser::launch().await;
    browser.goto(&app.url("/console")).await;
    browser.screenshots("login").await;

    // Sign up (which logs in), log out, log in.
    let email = "shop@example.com";
    browser.type_into("#login-email", email).await;
    browser.type_into("#login-password", PASSWORD).await;
    browser.click("#signup-submit").await;
    browser
        .wait_for(
            "document.getElementById('view-keys') !== null",
            "logged in after signup",
        )
        .await;
    browser.click("#logout").await;
    browser
        .wait_for(
            "document.getElementById('login-form') !== null",
            "the login form",
        )
        .await;
    assert_eq!(
        browser.eval("sessionStorage.length").await,
        0,
        "logout forgets every credential"
    );
    browser.type_into("#login-email", email).await;
    browser.type_into("#login-password", PASSWORD).await;
    browser.click("#login-submit").await;
    browser
        .wait_for(
            "document.getElementById('view-keys') !== null",
            "the keys view",
        )
        .await;

    // A key: its token is shown once.
    browser.type_into("#key-title", "shop server").await;
    browser.click("#key-create").await;
    let client_id = browser
        .wait_for(
            "document.getElementById('new-token-client')?.textContent",
            "the new key",
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let token = browser
        .eval("document.getElementById('new-token-value').textContent")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.len() >= 32, "{token}");
    browser
        .wait_for(
            &format!(
                "document.querySelector('#keys-table tr[data-key={}]') !== null",
                js(&client_id)
            ),
            "the key listed",
        )
        .await;
    browser.screenshots("keys").await;
    browser.click("#new-token button").await;
    browser
        .wait_for(
            "document.getElementById('new-token') === null",
            "the token put away",
        )
        .await;
    // Nowhere on the page any more, nor in the list the API gives.
    assert_eq!(
        browser
            .eval(&format!("document.body.innerText.includes({})", js(&token)))
            .await,
        false
    );

    // The settlements view, open before the payment: it fills in by itself.
    open_view(&mut browser, "settlements").await;
    let chain = ChainApp {
        app,
        devnet,
        client_id: client_id.clone(),
        client_token: token,
    };
    let state = write_state(&e2e_state(&chain));
    let path = state.path().to_str().unwrap().to_owned();
    let paid = node("tools/e2e/v1.mjs", &[&path]).await;
    assert_eq!(paid["ok"], true, "the official client paid: {paid}");
    let tx = paid["transaction"].as_str().unwrap().to_owned();
    let row = format!("#settlements-table tr[data-key={}]", js(&tx));
    let status = browser
        .wait_for(
            &format!(
                "(() => {{ const b = document.querySelector('{row} .badge'); \
                 return b && ['mined', 'confirmed'].includes(b.textContent) ? b.textContent : null; }})()",
                row = row.replace('\'', "\\'")
            ),
            "the settlement shown mined or confirmed, without a reload",
        )
        .await;
    eprintln!("console: settlement {tx} shown {status}");
    let href = browser
        .eval(&format!(
            "document.querySelector('{} a.tx').getAttribute('href')",
            row.replace('\'', "\\'")
        ))
        .await;
    assert_eq!(href, format!("{EXPLORER}/tx/{tx}"));
    assert_eq!(
        browser
            .eval("performance.getEntriesByType('navigation').length")
            .await,
        1,
        "one page load"
    );
    browser.screenshots("settlements").await;

    // Search by payer + nonce, and by transaction.
    let found: Value = chain
        .app
        .get(
            &format!("/api/v1/users/settlements?tx={tx}"),
            Some(&chain.app.login(email).await),
        )
        .await
        .json()
        .await
        .unwrap();
    let found = &found["data"][0];
    browser
        .type_into("#search-payer", found["payer"].as_str().unwrap())
        .await;
    browser
        .type_into("#search-nonce", found["nonce"].as_str().unwrap())
        .await;
    browser.click("#search-submit").await;
    browser
        .wait_for(
            "document.getElementById('settlements-count').textContent.startsWith('1 settlement found')",
            "the search by payer and nonce",
        )
        .await;

    // Nobody else sees it.
    let (other, _, _) = chain.app.user("other@example.com").await;
    let theirs: Value = chain
        .app
        .get(&format!("/api/v1/users/settlements?tx={tx}"), Some(&other))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"], json!([]), "another account's settlements");

    // Charts of what was settled.
    open_view(&mut browser, "charts").await;
    browser
        .wait_for(
            "[...document.querySelectorAll('#charts-daily rect.bar')].some(r => Number(r.dataset.value) > 0)",
            "a bar for today's settlement",
        )
        .await;
    browser.screenshots("charts").await;

    // A resource registered and edited.
    open_view(&mut browser, "resources").await;
    browser
        .type_into("#resource-url", "https://shop.example.com/paid")
        .await;
    browser
        .type_into("#resource-title", "Premium article")
        .await;
    browser.click("#resource-save").await;
    browser
        .wait_for(
            "document.querySelector('#resources-table .resource-title')?.textContent === 'Premium article'",
            "the resource listed",
        )
        .await;
    browser.click("#resources-table td button").await;
    browser
        .type_into("#resource-title", "Premium article, edited")
        .await;
    browser.click("#resource-save").await;
    browser
        .wait_for(
            "document.querySelector('#resources-table .resource-title')?.textContent === 'Premium article, edited'",
            "the resource edited",
        )
        .await;
    browser.screenshots("resources").await;

    // Pause the key; the next payment is refused and moves nothing.
    open_view(&mut browser, "keys").await;
    let key_row = format!("#keys-table tr[data-key={}]", js(&client_id));
    browser.click(&format!("{key_row} button.pause")).await;
    browser
        .wait_for(
            &format!(
                "document.querySelector('{} .badge')?.textContent === 'paused'",
                key_row.replace('\'', "\\'")
            ),
            "the key shown paused",
        )
        .await;
    let before = chain.balance(E2E_PAY_TO).await;
    assert_eq!(before, U256::from(E2E_PRICE));
    let refused = node("tools/e2e/v1.mjs", &[&path]).await;
    assert_eq!(refused["ok"], false, "a paused key pays nothing: {refused}");
    assert_eq!(chain.balance(E2E_PAY_TO).await, before, "nothing moved");
}

#[actix_web::test]
async fn an_operator_sees_a_frozen_endpoint_turn_unhealthy_and_a_signer_below_its_floor() {
    let devnet = Devnet::start(DevnetOptions::default())
        .await
        .expect("devnet");
    let first = TcpProxy::start(&devnet.rpc_url).await;
    let second = TcpProxy::start(&devnet.rpc_url).await;
    // The floor above what anvil gives a signer: below it from the start.
    let app = ChainApp::start_app_full(
        TestDb::create(Db::Sqlite).await,
        &devnet,
        devnet.facilitator_keys[..1].to_vec(),
        json!({ "rpc_url": [first.url(), second.url()], "min_signer_balance_eth": 1.0e9 }),
        json!({ "rpc": { "timeout_ms": 2000, "probe_interval_ms": 500 } }),
    )
    .await;
    let chain = ChainApp::with_merchant(app, devnet).await;

    let mut browser = Browser::launch().await;
    browser.goto(&chain.app.url("/console/")).await;
    // A wrong token is refused, and not kept.
    browser.type_into("#admin-token", "not-the-token").await;
    browser.click("#admin-submit").await;
    browser
        .wait_for(
            "document.querySelector('#flash .error') !== null",
            "the refusal",
        )
        .await;
    assert_eq!(browser.eval("sessionStorage.length").await, 0);
    browser.type_into("#admin-token", ADMIN_TOKEN).await;
    browser.click("#admin-submit").await;
    let endpoint = |i: usize| {
        format!("document.querySelectorAll('#rpc-table tbody tr')[{i}]?.querySelector('.badge')?.textContent")
    };
    browser
        .wait_for(
            &format!(
                "{} === 'healthy' && {} === 'healthy'",
                endpoint(0),
                endpoint(1)
            ),
            "both endpoints healthy",
        )
        .await;
    browser.screenshots("networks").await;

    // Freeze the first node: the page says so by itself.
    first.freeze();
    browser
        .wait_for(
            &format!(
                "{} === 'unhealthy' && {} === 'healthy'",
                endpoint(0),
                endpoint(1)
            ),
            "the frozen endpoint unhealthy, the other healthy",
        )
        .await;
    assert_eq!(
        browser
            .eval("performance.getEntriesByType('navigation').length")
            .await,
        1,
        "no reload"
    );
    browser.screenshots("networks-frozen").await;
    first.pass();

    open_view(&mut browser, "signers").await;
    browser
        .wait_for(
            "document.querySelector('#signers-table .badge.below-floor')?.textContent === 'below floor'",
            "the signer flagged below its floor",
        )
        .await;
    browser.screenshots("signers").await;

    open_view(&mut browser, "fleet").await;
    browser
        .wait_for(
            "document.querySelectorAll('#instances-table tbody tr .badge.ok').length >= 1",
            "a live instance",
        )
        .await;
    browser.screenshots("fleet").await;

    // A settlement held in the pool (anvil mines only on demand): in flight, with the step
    // reconciliation would take; once mined it leaves the list, without a reload.
    chain.devnet.set_automine(false).await.unwrap();
    let body = signed(&chain, 0, 10_000);
    let watch = async {
        open_view(&mut browser, "inflight").await;
        browser
            .wait_for(
                "[...document.querySelectorAll('#inflight-table tbody tr')].some(r => \
                 r.textContent.includes('submitted') && r.textContent.includes('Look up the receipt'))",
                "the settlement in flight",
            )
            .await;
        browser.screenshots("inflight").await;
        chain.devnet.mine().await.unwrap();
        browser
            .wait_for(
                "document.querySelector('#inflight-table tbody td[colspan]') !== null",
                "the settlement resolved",
            )
            .await;
    };
    let (settled, ()) = futures::join!(chain.settle(&body), watch);
    chain.devnet.set_automine(true).await.unwrap();
    assert_eq!(settled["success"], true, "{settled}");

    open_view(&mut browser, "users").await;
    browser.click("#users-table a").await;
    browser
        .wait_for("document.querySelector('#user-keys-table tbody tr td') !== null && document.querySelector('#user-keys-table code') !== null", "the user's keys")
        .await;
    // The operator gives the key 5 settle credits.
    browser
        .type_into("#user-keys-table input[aria-label='settle credits']", "5")
        .await;
    browser.click("#user-keys-table form button").await;
    browser
        .wait_for(
            "[...document.querySelectorAll('#user-keys-table td')].some(td => \
             td.dataset.label === 'Credits' && td.textContent === '5')",
            "the key's credits set",
        )
        .await;
    let status: Value = chain
        .app
        .get_as_client(
            "/api/v1/clients/status",
            &chain.client_id,
            &chain.client_token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["data"]["settleCredits"], 5, "{status}");
    browser.screenshots("users").await;

    open_view(&mut browser, "assets").await;
    browser
        .wait_for(
            "document.querySelectorAll('#assets-table tbody tr').length >= 1",
            "the assets",
        )
        .await;
    browser.screenshots("assets").await;

    // Log out: nothing left.
    browser.click("#logout").await;
    browser
        .wait_for(
            "document.getElementById('admin-form') !== null",
            "the login page",
        )
        .await;
    assert_eq!(browser.eval("sessionStorage.length").await, 0);
}
