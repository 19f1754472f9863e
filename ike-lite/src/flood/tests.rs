use super::*;
use crate::message::{Message, Notify, Payload};

fn init_msg(cookie: Option<&[u8]>) -> Vec<u8> {
    let mut payloads = vec![
        Payload::Nonce(vec![7; 32]),
        Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            vec![1; 20],
        )),
    ];
    if let Some(c) = cookie {
        payloads.insert(
            0,
            Payload::Notify(Notify::new(NotifyType::COOKIE, c.to_vec())),
        );
    }
    Message {
        header: Header::new(42, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0),
        payloads,
    }
    .emit()
}

#[test]
fn init_view_finds_the_first_payload_cookie_and_the_nonce() {
    let m = init_msg(Some(b"abc"));
    let v = InitView::parse(&m).unwrap();
    assert_eq!(v.cookie, Some(&b"abc"[..]));
    assert_eq!(v.nonce, &[7u8; 32][..]);
    let m = init_msg(None);
    assert_eq!(InitView::parse(&m).unwrap().cookie, None);
    // A COOKIE that is not the first payload does not count.
    let mut msg = Message::parse(&init_msg(None)).unwrap();
    msg.payloads
        .push(Payload::Notify(Notify::new(NotifyType::COOKIE, vec![1])));
    assert_eq!(InitView::parse(&msg.emit()).unwrap().cookie, None);
    // Truncated chains and a missing nonce give nothing.
    let m = init_msg(Some(b"abc"));
    for cut in 0..m.len() {
        if let Some(v) = InitView::parse(&m[..cut]) {
            panic!("{cut}: {v:?}");
        }
    }
    let mut msg = Message::parse(&init_msg(None)).unwrap();
    msg.payloads.remove(0);
    assert_eq!(InitView::parse(&msg.emit()), None);
}

#[test]
fn cookie_binds_address_spi_nonce_and_time() {
    let mut jar = Guard::new(Zeroizing::new([3; 32])).jar;
    let mut rng = rand_core::OsRng;
    let t0 = Instant::now();
    let ip: IpAddr = "10.1.2.3".parse().unwrap();
    let c = jar.make(t0, b"nonce", ip, 9, &mut rng);
    assert!(jar.verify(t0, &c, b"nonce", ip, 9));
    assert!(jar.verify(t0 + COOKIE_LIFETIME, &c, b"nonce", ip, 9));
    assert!(!jar.verify(
        t0 + COOKIE_LIFETIME + Duration::from_secs(1),
        &c,
        b"nonce",
        ip,
        9
    ));
    assert!(!jar.verify(t0, &c, b"nonce", "10.1.2.4".parse().unwrap(), 9));
    assert!(!jar.verify(t0, &c, b"nonce", ip, 8));
    assert!(!jar.verify(t0, &c, b"other", ip, 9));
    assert!(!jar.verify(t0, &c[..COOKIE_LEN - 1], b"nonce", ip, 9));
    // A timestamp from the future is refused.
    let mut later = c;
    later[..4].copy_from_slice(&5u32.to_be_bytes());
    assert!(!jar.verify(t0, &later, b"nonce", ip, 9));
}

#[test]
fn table_counts_sources_blocks_and_deadlines() {
    let mut t: HalfOpenTable<()> = HalfOpenTable::default();
    let now = Instant::now();
    let a: SocketAddr = "10.0.0.1:500".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:4500".parse().unwrap();
    for i in 0..3 {
        t.insert(i, (i, a), now + Duration::from_secs(i), (), 3);
    }
    t.insert(9, (9, b), now, (), 3);
    assert_eq!((t.count(), t.count_from(a.ip()), t.blocked()), (4, 3, 1));
    assert_eq!(t.find(&(1, a)), Some(1));
    assert_eq!(t.expired(now), vec![0, 9]);
    assert_eq!(t.next_deadline(), Some(now));
    assert!(t.remove(1, 3).is_some());
    assert!(t.remove(1, 3).is_none());
    assert_eq!((t.count_from(a.ip()), t.blocked()), (2, 0));
    assert_eq!(t.find(&(1, a)), None);
    for id in [0, 2, 9] {
        t.remove(id, 3);
    }
    assert_eq!((t.len(), t.per_source.len(), t.deadlines.len()), (0, 0, 0));
}

#[test]
fn block_threshold_is_raised_above_the_per_source_cookie_threshold_in_auto_mode() {
    let l = FloodLimits {
        cookie_threshold_ip: 5,
        block_threshold: 5,
        ..Default::default()
    };
    assert_eq!(l.effective_block_threshold(), 6);
    assert_eq!(FloodLimits::default().effective_block_threshold(), 5);
    let never = FloodLimits {
        cookies: CookieMode::Never,
        ..l
    };
    assert_eq!(never.effective_block_threshold(), 5);
}

#[test]
fn cookie_response_is_a_valid_ike_message() {
    let c = [5u8; COOKIE_LEN];
    let m = Message::parse(&cookie_response(77, &c)).unwrap();
    assert_eq!(m.header.spi_i, 77);
    assert!(m.header.is_response());
    assert_eq!(
        m.payloads,
        vec![Payload::Notify(Notify::new(NotifyType::COOKIE, c.to_vec()))]
    );
}
