//! Control socket server + client over a temporary socket path.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tun_bridge::control::{
    query, status_text, ControlError, ControlServer, Request, Response, StatusReport, TunnelRole,
    TunnelState, TunnelStatus, MAX_CLIENTS, MAX_REQUEST_LEN,
};
use tun_bridge::sys::poll::{Poller, Token};

static N: AtomicU32 = AtomicU32::new(0);

fn temp_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "tb-ctl-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn report(served: u64) -> StatusReport {
    StatusReport {
        version: "test".into(),
        pid: std::process::id(),
        uptime_secs: served,
        tunnels: vec![TunnelStatus {
            name: "t1".into(),
            state: TunnelState::Established,
            role: TunnelRole::Standby,
            local_addr: "192.0.2.1".parse().unwrap(),
            remote_addr: "192.0.2.2".parse().unwrap(),
            interface: "tb-t1".into(),
            carrier: None,
            ike_algorithms: Some("AES_GCM_16-128/PRF_HMAC_SHA2_256/MODP_2048".into()),
            esp_algorithms: Some("AES_GCM_16-128".into()),
            ike_spi_i: Some("0x0000000000000001".into()),
            ike_spi_r: Some("0xffffffffffffffff".into()),
            spi_in: Some(1),
            spi_out: Some(0xffff_ffff),
            bytes_in: 10,
            bytes_out: 20,
            packets_in: 1,
            packets_out: 2,
            drops: BTreeMap::from([("replay".to_string(), 5)]),
            last_rekey_secs: None,
            next_rekey_secs: Some(60),
            child_rekeys: 0,
            ike_rekeys: 0,
            dpd_failures: 0,
            established_secs: Some(5),
            last_error: None,
        }],
        ike: Default::default(),
    }
}

/// Run a server loop (as the runtime will: poller + token range) on a
/// thread until `stop`; answers status with a counter of served requests.
fn serve(path: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut server = ControlServer::bind(path).expect("bind");
    std::thread::spawn(move || {
        let mut poller = Poller::new(16).unwrap();
        server.register(&poller, Token(100)).unwrap();
        let mut served = 0u64;
        let mut handler = |req: &Request| match req {
            Request::Status => {
                served += 1;
                Response::status(report(served))
            }
            _ => Response::error("unsupported"),
        };
        while !stop.load(Ordering::Relaxed) {
            poller.wait(Some(Duration::from_millis(20))).unwrap();
            let evs: Vec<_> = poller.events().collect();
            for ev in evs {
                assert!(server.owns(ev.token));
                server.handle(&poller, ev, &mut handler);
            }
        }
        drop(server);
        served
    })
}

#[test]
fn status_over_socket_with_permissions_and_cleanup() {
    let path = temp_path();
    let stop = Arc::new(AtomicBool::new(false));
    let h = serve(&path, stop.clone());
    let md = std::fs::metadata(&path).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o600);

    let r = query(&path, &Request::Status, Duration::from_secs(2)).unwrap();
    assert!(r.ok);
    let st = r.status.unwrap();
    assert_eq!(st.uptime_secs, 1);
    assert_eq!(st.tunnels[0].drops["replay"], 5);
    assert_eq!(st.tunnels[0].role, TunnelRole::Standby);

    let table = status_text(&path, false, Duration::from_secs(2)).unwrap();
    assert!(table.contains("tunnel: t1 (standby)"), "{table}");
    assert!(
        table.contains("spi: in 0x00000001  out 0xffffffff"),
        "{table}"
    );
    let json = status_text(&path, true, Duration::from_secs(2)).unwrap();
    let back: StatusReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.uptime_secs, 3);

    // several requests pipelined on one connection, one answer line each,
    // and a bad request answered with an error without closing
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"{\"cmd\":\"status\"}\n{\"cmd\":\"nope\"}\r\n{\"cmd\":\"status\"}\n")
        .unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut answers = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        rd.read_line(&mut line).unwrap();
        answers.push(serde_json::from_str::<Response>(&line).unwrap());
    }
    assert!(answers[0].ok && !answers[1].ok && answers[2].ok);
    assert!(answers[1]
        .error
        .as_deref()
        .unwrap()
        .contains("unknown variant"));

    // an over-long line gets an error and the connection is closed
    let mut s2 = UnixStream::connect(&path).unwrap();
    s2.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s2.write_all(&vec![b'x'; MAX_REQUEST_LEN + 100]);
    let mut rd2 = BufReader::new(s2);
    let mut line = String::new();
    rd2.read_line(&mut line).unwrap();
    let r: Response = serde_json::from_str(&line).unwrap();
    assert!(!r.ok && r.error.unwrap().contains("too long"));
    line.clear();
    assert_eq!(
        rd2.read_line(&mut line).unwrap(),
        0,
        "connection not closed"
    );

    // a second server on the same live path is refused
    assert!(matches!(
        ControlServer::bind(&path),
        Err(ControlError::InUse(_))
    ));

    stop.store(true, Ordering::Relaxed);
    let served = h.join().unwrap();
    assert_eq!(served, 5);
    assert!(!path.exists(), "socket file not removed on drop");
    assert!(matches!(
        query(&path, &Request::Status, Duration::from_secs(1)),
        Err(ControlError::Connect(_))
    ));
}

#[test]
fn stale_socket_replaced_and_non_socket_refused() {
    let path = temp_path();
    {
        // a listener that is gone leaves a stale socket file behind
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(l);
    }
    assert!(path.exists());
    let s = ControlServer::bind(&path).expect("stale socket replaced");
    drop(s);
    std::fs::write(&path, b"not a socket").unwrap();
    assert!(matches!(
        ControlServer::bind(&path),
        Err(ControlError::InUse(_))
    ));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn client_limit_and_timeout() {
    let path = temp_path();
    let stop = Arc::new(AtomicBool::new(false));
    let h = serve(&path, stop.clone());
    // fill every slot with idle clients; one more is closed at once
    let idle: Vec<UnixStream> = (0..MAX_CLIENTS)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = query(&path, &Request::Status, Duration::from_secs(2));
    assert!(
        matches!(r, Err(ControlError::Closed) | Err(ControlError::Io(_))),
        "{r:?}"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        query(&path, &Request::Status, Duration::from_secs(2))
            .unwrap()
            .ok
    );
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();

    // a server that never answers: the client times out
    let path2 = temp_path();
    let _mute = std::os::unix::net::UnixListener::bind(&path2).unwrap();
    let r = query(&path2, &Request::Status, Duration::from_millis(200));
    assert!(matches!(r, Err(ControlError::Timeout)), "{r:?}");
    std::fs::remove_file(&path2).unwrap();
}
