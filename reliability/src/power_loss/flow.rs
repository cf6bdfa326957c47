//! The calls the power-loss campaign and the fsync test send the binary: an office, a release of
//! patterns and one of 6,000 listed serials (a sled blob), certificate records, then citizens
//! through the whole flow (SMS, application, identity), a release of 100,000 numbers by
//! patterns (stored as its patterns, restored by expanding them), a burst of draws from many
//! connections at once (they land as group commits of several calls), then candidates, claims,
//! a registration, a void and a withdrawal; and the opening ([`Flow::opening_run`]): thousands
//! of draws at the opening of a release, held by the office's opening window and served
//! together. Each request remembers its connection's port (how the trace names it) and what
//! its answer acknowledged, so that a folder rebuilt from the trace can be checked against
//! every answer given before.

use std::time::{Duration, Instant};

use platepool_engine::vin::Vin;
use serde_json::{json, Value};

use crate::fuzz::http::{token, OPERATOR};
use crate::http::{Answer, Conn};

pub const OFFICE: &str = "pl";
/// Serials of the listed release: about as many as a 64 KiB body holds (the limit of operator
/// calls); its stored record is already over sled's blob threshold.
pub const LISTED_SERIALS: usize = 6_000;
/// Letters of the large release: `M####` … `W####` (I and O are not serial letters).
const LARGE_RELEASE_LETTERS: &str = "MNPQRSTUVW";
/// Numbers of the large release, named by patterns (100,000 listed serials would not fit in a
/// request body).
pub const LARGE_RELEASE_NUMBERS: u64 = 100_000;
/// The burst of draws: how many citizens, how many draws among them, and how many
/// connections send them at once (each one draw after another: the office's writer finds
/// many draws waiting at each group commit).
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub citizens: u32,
    pub draws: u32,
    /// Below the office's shedding depth (`SHED_MIN_DEPTH`): no draw is refused as overload.
    pub clients: u32,
}

/// Draws at the opening of a release, in an office whose opening window holds them all (see
/// [`Flow::opening_run`]).
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    pub citizens: u32,
    /// Each on its own connection, sent at once; at most an office's mailbox (4,096).
    pub draws: u32,
    /// The office's opening window: every draw must arrive within it.
    pub window_ms: u64,
}

/// How long after the large release is created it opens, in the opening run.
const OPENING_LEAD_MS: u64 = 1_500;

/// One draw on a connection of its own, sent once (no retry on another connection, which
/// could draw twice), with the connection's port; the answer may take the whole window.
fn draw_once(port: u16, c: &Citizen) -> Result<(Answer, u16), String> {
    use std::io::{Read, Write};
    let path = format!("/v1/applications/{}/draws", c.app);
    let fail = |e: std::io::Error| format!("POST {path}: {e}");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(fail)?;
    let client_port = stream.local_addr().map_err(fail)?.port();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(fail)?;
    let body = json!({"exclude_four": false}).to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        c.token,
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(fail)?;
    let answer = parse_answer(&raw).ok_or_else(|| {
        format!(
            "POST {path}: not an HTTP answer: {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })?;
    Ok((answer, client_port))
}

/// A whole answer read to the connection's end (`Connection: close`, a sized body).
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Draws each application may make: the most an office allows, more than any burst's share.
const RANDOM_QUOTA: u32 = platepool_engine::config::QUOTA_MAX;
/// A draw sent among others at once: when, by whom, its answer and its connection's port.
type Sent = (Instant, Citizen, Result<(Answer, u16), String>);

/// A change an answer acknowledged, as it can be read back.
#[derive(Debug, Clone)]
pub enum Expect {
    Office,
    Release {
        id: u64,
        total: u64,
    },
    Application {
        id: String,
        token: String,
    },
    /// The application's random quota was at most this after the draw.
    Drawn {
        id: String,
        token: String,
        random_left: u64,
    },
    Claimed {
        id: String,
        token: String,
        serial: String,
    },
    Issued {
        id: String,
        token: String,
    },
    Voided {
        id: String,
        token: String,
    },
    Withdrawn {
        serial: String,
    },
    /// An SMS message in the outbox for the phone (at least this many).
    Sms {
        phone: String,
        count: usize,
    },
}

/// One request the client sent and the answer it got.
#[derive(Debug, Clone)]
pub struct Request {
    pub what: String,
    pub client_port: u16,
    pub status: u16,
    pub expect: Option<Expect>,
    /// Sent while other requests were in flight (the burst of draws): other requests' writes
    /// may be unsynced at its answer, so its own changes are checked after power losses instead.
    pub concurrent: bool,
}

/// A citizen of the flow: phone, token, application id.
#[derive(Debug, Clone)]
pub struct Citizen {
    pub phone: String,
    pub token: String,
    pub app: String,
}

fn vin(n: u32) -> String {
    Vin::with_check_digit(&format!("LSVPL{n:03}X12345678"))
        .map(Vin::into_string)
        .unwrap_or_default()
}

/// Sends one request on a fresh connection, returning the answer and the connection's port.
pub fn send(
    port: u16,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(Answer, u16), String> {
    let mut conn = Conn::open(port).map_err(|e| format!("{method} {path}: {e}"))?;
    let client_port = conn.local_port();
    let bearer = format!("Bearer {auth}");
    let text = body.map(Value::to_string);
    let answer = conn
        .send(
            method,
            path,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Connection", "close"),
            ],
            text.as_deref().map(str::as_bytes),
        )
        .map_err(|e| format!("{method} {path}: {e}"))?;
    Ok((answer, client_port))
}

/// The flow's record: every request in order.
#[derive(Debug, Default)]
pub struct Flow {
    pub requests: Vec<Request>,
    /// Draws of the burst that were not answered 201, with their answer.
    pub failures: Vec<String>,
}

impl Flow {
    /// Sends a request that must answer `want`; records it with what it acknowledged.
    fn call(
        &mut self,
        port: u16,
        auth: &str,
        (method, path): (&str, &str),
        body: Option<&Value>,
        want: u16,
        expect: impl FnOnce(&Value) -> Option<Expect>,
    ) -> Result<Value, String> {
        let (a, client_port) = send(port, auth, method, path, body)?;
        let v = a.json();
        let expect = (a.status == want).then(|| expect(&v)).flatten();
        self.requests.push(Request {
            what: format!("{method} {path}"),
            client_port,
            status: a.status,
            expect,
            concurrent: false,
        });
        if a.status != want {
            return Err(format!(
                "{method} {path}: {} (wanted {want}): {}",
                a.status,
                a.text()
            ));
        }
        Ok(v)
    }

    fn last_code(&mut self, port: u16, phone: &str) -> Result<String, String> {
        let v = self.call(
            port,
            OPERATOR,
            ("GET", &format!("/v1/admin/sms/outbox?phone={phone}")),
            None,
            200,
            |_| None,
        )?;
        let text = v
            .as_array()
            .and_then(|l| l.last())
            .and_then(|m| m["text"].as_str())
            .unwrap_or("")
            .to_string();
        let chars: Vec<char> = text.chars().collect();
        chars
            .windows(6)
            .map(|w| w.iter().collect::<String>())
            .find(|w| w.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| format!("no code in the outbox for {phone}: {v}"))
    }

    /// Sends one SMS of `purpose` and returns its code.
    fn sms(&mut self, port: u16, c: &Citizen, body: Value, sent: usize) -> Result<String, String> {
        let phone = c.phone.clone();
        self.call(
            port,
            &c.token,
            ("POST", "/v1/sms"),
            Some(&body),
            200,
            |_| Some(Expect::Sms { phone, count: sent }),
        )?;
        self.last_code(port, &c.phone)
    }

    /// The operator's side: office, two releases, certificates for `citizens`.
    pub fn operator_setup(&mut self, port: u16, citizens: u32) -> Result<(), String> {
        self.office_setup(port, citizens, 0, true)
    }

    /// An office with an opening window of `window_ms` (0: none), a release of patterns, the
    /// listed release if `listed`, certificates for `citizens`.
    fn office_setup(
        &mut self,
        port: u16,
        citizens: u32,
        window_ms: u64,
        listed: bool,
    ) -> Result<(), String> {
        let office = json!({
            "name": "power loss office", "prefix": "粤K", "classes": ["small"],
            "rules": {"sms_confirm_delay_ms": 0, "opening_window_ms": window_ms,
                      "custom_min_interval_ms": 0, "random_min_interval_ms": 0,
                      "random_quota": RANDOM_QUOTA},
            "notice": {"version": "v1", "text": "terms"}
        });
        let path = format!("/v1/admin/offices/{OFFICE}");
        self.call(port, OPERATOR, ("PUT", &path), Some(&office), 201, |_| {
            Some(Expect::Office)
        })?;
        let releases = format!("/v1/admin/offices/{OFFICE}/releases");
        let release = |v: &Value| {
            Some(Expect::Release {
                id: v["id"].as_u64()?,
                total: v["total"].as_u64()?,
            })
        };
        let patterns = json!({"class": "small", "label": "A", "patterns": ["A####"]});
        self.call(
            port,
            OPERATOR,
            ("POST", &releases),
            Some(&patterns),
            201,
            release,
        )?;
        if listed {
            let serials: Vec<String> = "BCDEFGHJKL"
                .chars()
                .flat_map(|l| (0..10_000).map(move |n| format!("{l}{n:04}")))
                .take(LISTED_SERIALS)
                .collect();
            let listed = json!({"class": "small", "label": "listed", "serials": serials});
            self.call(
                port,
                OPERATOR,
                ("POST", &releases),
                Some(&listed),
                201,
                release,
            )?;
        }
        let rows: Vec<Value> = (1..=citizens)
            .map(|n| json!({"vin": vin(n), "voucher": format!("PL{n:06}"), "class": "small", "energy": "fuel"}))
            .collect();
        self.call(
            port,
            OPERATOR,
            ("POST", "/v1/admin/certificates"),
            Some(&Value::Array(rows)),
            200,
            |_| None,
        )?;
        Ok(())
    }

    /// The release of [`LARGE_RELEASE_NUMBERS`] numbers by patterns, open at once or at
    /// `opens_at_ms`.
    fn large_release(&mut self, port: u16, opens_at_ms: Option<u64>) -> Result<(), String> {
        let patterns: Vec<String> = LARGE_RELEASE_LETTERS
            .chars()
            .map(|l| format!("{l}####"))
            .collect();
        let mut body = json!({"class": "small", "label": "large", "patterns": patterns});
        if let Some(ms) = opens_at_ms {
            let at = i64::try_from(ms)
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .ok_or_else(|| format!("no instant {ms}"))?;
            body["opens_at"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        let v = self.call(
            port,
            OPERATOR,
            ("POST", &format!("/v1/admin/offices/{OFFICE}/releases")),
            Some(&body),
            201,
            |v| {
                Some(Expect::Release {
                    id: v["id"].as_u64()?,
                    total: v["total"].as_u64()?,
                })
            },
        )?;
        match v["total"].as_u64() {
            Some(LARGE_RELEASE_NUMBERS) => Ok(()),
            other => Err(format!(
                "the large release added {other:?} numbers, not {LARGE_RELEASE_NUMBERS}"
            )),
        }
    }

    /// Citizen `n` (1 ..= the certificates imported) through SMS, application, identity.
    pub fn citizen(&mut self, port: u16, n: u32) -> Result<Citizen, String> {
        let phone = format!("1370000{n:04}");
        let exp = platepool_engine::calendar::now_ms() / 1000 + 3_600;
        let mut c = Citizen {
            token: token(&format!("pl{n}"), &phone, exp),
            phone,
            app: String::new(),
        };
        let code = self.sms(port, &c, json!({"purpose": "apply"}), 1)?;
        let body = json!({"office": OFFICE, "vin": vin(n), "voucher": format!("PL{n:06}"),
                          "notice_version": "v1", "sms_code": code});
        let tok = c.token.clone();
        let v = self.call(
            port,
            &c.token,
            ("POST", "/v1/applications"),
            Some(&body),
            201,
            |v| {
                Some(Expect::Application {
                    id: v["id"].as_str()?.to_string(),
                    token: tok,
                })
            },
        )?;
        c.app = v["id"].as_str().unwrap_or_default().to_string();
        let code = self.sms(
            port,
            &c,
            json!({"purpose": "identity", "application": c.app}),
            2,
        )?;
        self.call(
            port,
            &c.token,
            ("POST", &format!("/v1/applications/{}/identity", c.app)),
            Some(&json!({"sms_code": code})),
            200,
            |_| None,
        )?;
        Ok(c)
    }

    /// `burst.draws` draws among the citizens, sent by `burst.clients` keep-alive connections
    /// at once. The requests are recorded in the order they were sent, which is the order of
    /// their answers on each client port (a port closed by one thread may be reused by another).
    fn draw_burst(&mut self, port: u16, citizens: &[Citizen], burst: &Burst) {
        let clients = burst.clients.max(1) as usize;
        let handles: Vec<_> = (0..clients)
            .map(|k| {
                let mine: Vec<Citizen> = (k..burst.draws as usize)
                    .step_by(clients)
                    .filter_map(|i| citizens.get(i % citizens.len().max(1)).cloned())
                    .collect();
                std::thread::spawn(move || -> Vec<Sent> {
                    let mut conn = Conn::open(port).map_err(|e| e.to_string());
                    mine.into_iter()
                        .map(|c| {
                            let path = format!("/v1/applications/{}/draws", c.app);
                            let body = json!({"exclude_four": false}).to_string();
                            let at = Instant::now();
                            let bearer = format!("Bearer {}", c.token);
                            let sent = match &mut conn {
                                Ok(conn) => {
                                    let client_port = conn.local_port();
                                    conn.send(
                                        "POST",
                                        &path,
                                        &[
                                            ("Authorization", &bearer),
                                            ("Content-Type", "application/json"),
                                        ],
                                        Some(body.as_bytes()),
                                    )
                                    .map(|a| (a, client_port))
                                    .map_err(|e| format!("POST {path}: {e}"))
                                }
                                Err(e) => Err(e.clone()),
                            };
                            (at, c, sent)
                        })
                        .collect()
                })
            })
            .collect();
        let mut sent: Vec<Sent> = Vec::new();
        for h in handles {
            match h.join() {
                Ok(some) => sent.extend(some),
                Err(_) => self.failures.push("a client thread panicked".into()),
            }
        }
        self.record_draws(sent);
    }

    /// Records draws sent at once, in the order they were sent (on each client port, the order
    /// of their answers).
    fn record_draws(&mut self, mut sent: Vec<Sent>) {
        sent.sort_by_key(|(at, _, _)| *at);
        for (_, c, result) in sent {
            match result {
                Ok((a, client_port)) => {
                    let v = a.json();
                    let expect = (a.status == 201).then(|| Expect::Drawn {
                        id: c.app.clone(),
                        token: c.token.clone(),
                        random_left: v["random_left"].as_u64().unwrap_or(u64::MAX),
                    });
                    self.requests.push(Request {
                        what: format!("POST /v1/applications/{}/draws", c.app),
                        client_port,
                        status: a.status,
                        expect,
                        concurrent: true,
                    });
                    if a.status != 201 {
                        let text: String = a.text().chars().take(200).collect();
                        self.failures
                            .push(format!("draw of {}: {} {text}", c.app, a.status));
                    }
                }
                Err(e) => self.failures.push(e),
            }
        }
    }

    /// The opening: an office whose opening window is `opening.window_ms`, its citizens, and
    /// the large release opening a moment later; at its opening every draw is sent at once,
    /// each on its own connection. The office holds every draw that arrives in the window and
    /// serves them all when it ends: their commits reach the writer together and land as
    /// group commits of thousands.
    pub fn opening_run(&mut self, port: u16, opening: &Opening) -> Result<(), String> {
        self.office_setup(port, opening.citizens, opening.window_ms, false)?;
        let people: Vec<Citizen> = (1..=opening.citizens)
            .map(|n| self.citizen(port, n))
            .collect::<Result<_, _>>()?;
        let opens_at = platepool_engine::calendar::now_ms() + OPENING_LEAD_MS;
        self.large_release(port, Some(opens_at))?;
        let now = platepool_engine::calendar::now_ms();
        if now >= opens_at + opening.window_ms {
            return Err(format!(
                "the release was answered {} ms after its opening window ended",
                now - opens_at - opening.window_ms
            ));
        }
        // Just after the opening instant: every draw falls in the window.
        std::thread::sleep(Duration::from_millis(opens_at.saturating_sub(now) + 50));
        self.held_draws(port, &people, opening.draws);
        Ok(())
    }

    /// `draws` draws among `citizens`, all sent at once, each on a connection of its own.
    fn held_draws(&mut self, port: u16, citizens: &[Citizen], draws: u32) {
        let handles: Vec<_> = (0..draws as usize)
            .filter_map(|i| citizens.get(i % citizens.len().max(1)).cloned())
            .map(|c| {
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || -> Sent {
                        let at = Instant::now();
                        let sent = draw_once(port, &c);
                        (at, c, sent)
                    })
            })
            .collect();
        let mut sent: Vec<Sent> = Vec::new();
        for h in handles {
            match h
                .map_err(|e| e.to_string())
                .and_then(|h| h.join().map_err(|_| "a client thread panicked".to_string()))
            {
                Ok(one) => sent.push(one),
                Err(e) => self.failures.push(e),
            }
        }
        self.record_draws(sent);
    }

    /// One more draw of `c`, alone: its batch is the application's live one.
    fn draw(&mut self, port: u16, c: &Citizen) -> Result<Value, String> {
        let (id, tok) = (c.app.clone(), c.token.clone());
        self.call(
            port,
            &c.token,
            ("POST", &format!("/v1/applications/{}/draws", c.app)),
            Some(&json!({"exclude_four": false})),
            201,
            |v| {
                Some(Expect::Drawn {
                    id,
                    token: tok,
                    random_left: v["random_left"].as_u64()?,
                })
            },
        )
    }

    /// The whole flow: the burst's citizens, the large release, the burst of draws, then picks
    /// and claims, a registration, a void and a withdrawal.
    pub fn run(&mut self, port: u16, burst: &Burst) -> Result<(), String> {
        self.operator_setup(port, burst.citizens)?;
        let people: Vec<Citizen> = (1..=burst.citizens)
            .map(|n| self.citizen(port, n))
            .collect::<Result<_, _>>()?;
        self.large_release(port, None)?;
        self.draw_burst(port, &people, burst);
        let mut claimed = Vec::new();
        for c in people.iter().take(3) {
            let draw = self.draw(port, c)?;
            let plate = &draw["batch"]["plates"][0];
            let Some(serial) = plate.as_str().or_else(|| plate["serial"].as_str()) else {
                return Err(format!("no plate in the draw of {}: {draw}", c.app));
            };
            let serial = serial.rsplit('·').next().unwrap_or(serial).to_string();
            let base = format!("/v1/applications/{}", c.app);
            let body = json!({"serial": serial});
            self.call(
                port,
                &c.token,
                ("POST", &format!("{base}/candidates")),
                Some(&body),
                200,
                |_| None,
            )?;
            let (id, tok, s) = (c.app.clone(), c.token.clone(), serial.clone());
            self.call(
                port,
                &c.token,
                ("POST", &format!("{base}/claim")),
                Some(&body),
                201,
                |_| {
                    Some(Expect::Claimed {
                        id,
                        token: tok,
                        serial: s,
                    })
                },
            )?;
            claimed.push((c.clone(), serial));
        }
        if let Some((c, serial)) = claimed.first() {
            let (id, tok) = (c.app.clone(), c.token.clone());
            self.call(
                port,
                OPERATOR,
                ("POST", "/v1/admin/registrations"),
                Some(&json!({"office": OFFICE, "serial": serial})),
                200,
                |_| Some(Expect::Issued { id, token: tok }),
            )?;
        }
        if let Some((c, serial)) = claimed.get(1) {
            let (id, tok) = (c.app.clone(), c.token.clone());
            self.call(
                port,
                OPERATOR,
                (
                    "POST",
                    &format!("/v1/admin/offices/{OFFICE}/claims/{serial}/void"),
                ),
                Some(&json!({"reason": "owner asked"})),
                200,
                |_| Some(Expect::Voided { id, token: tok }),
            )?;
        }
        let serial = "B5999".to_string();
        self.call(
            port,
            OPERATOR,
            (
                "DELETE",
                &format!("/v1/admin/offices/{OFFICE}/plates/{serial}"),
            ),
            Some(&json!({})),
            200,
            |_| Some(Expect::Withdrawn { serial }),
        )?;
        std::thread::sleep(Duration::from_millis(50));
        Ok(())
    }
}
