#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
use super::*;
use crate::store::SledStore;

fn accounts(timeouts: Timeouts) -> Accounts {
    let dir = std::env::temp_dir().join(format!(
        "sealgate-accounts-{}",
        crate::util::new_session_id()
    ));
    let db = crate::db::Db::open(&dir).unwrap();
    Accounts::new(Arc::new(SledStore::new(&db)), timeouts)
}

fn admin() -> Actor {
    Actor::local_root()
}

const PW: &str = "correct horse battery staple";

fn enrolled(a: &Accounts, name: &str) -> Vec<u8> {
    a.create(&admin(), name, Role::Operator, PW).unwrap();
    let LoginOutcome::Enrol(e) = a.login(name, PW, None, None).unwrap() else {
        panic!("a new account enrols first");
    };
    let secret = unhex(&{
        let key = format!("e:{}", sha256_hex(&e.enrolment));
        let bytes = a
            .store
            .get(Space::Sessions, key.as_bytes())
            .unwrap()
            .unwrap();
        serde_json::from_slice::<StoredEnrolment>(&bytes)
            .unwrap()
            .secret
    })
    .unwrap();
    let now = now_ms() / 1000;
    // The previous step: the login that follows uses the current one.
    let code = format!("{:06}", totp::code(&secret, now / totp::STEP - 1));
    a.enrol_totp(&e.enrolment, &code).unwrap();
    secret
}

#[test]
fn login_needs_password_and_a_fresh_code() {
    let a = accounts(Timeouts::default());
    let secret = enrolled(&a, "olga");
    let code = format!("{:06}", totp::code(&secret, now_ms() / 1000 / totp::STEP));
    assert_eq!(
        a.login("olga", "wrong password here", Some(&code), None),
        Err(login_failed())
    );
    assert_eq!(
        a.login("nobody", PW, Some(&code), None),
        Err(login_failed()),
        "same answer"
    );
    assert_eq!(a.login("olga", PW, None, None), Err(login_failed()));
    let LoginOutcome::Session(grant) = a.login("olga", PW, Some(&code), None).unwrap() else {
        panic!("logged in");
    };
    assert_eq!(grant.session.role, Role::Operator);
    assert_eq!(
        a.login("olga", PW, Some(&code), None),
        Err(login_failed()),
        "a code works once"
    );
    let info = a.session(&grant.id, true).unwrap();
    assert_eq!(info.account, "olga");
    a.logout(&grant.id).unwrap();
    assert!(matches!(
        a.session(&grant.id, true),
        Err(ServiceError::NotFound { .. })
    ));
}

#[test]
fn failures_throttle_the_account_with_growing_delays() {
    let a = accounts(Timeouts::default());
    for _ in 0..FREE_FAILURES {
        assert_eq!(a.login("ghost", "x", None, None), Err(login_failed()));
    }
    assert_eq!(a.login("ghost", "x", None, None), Err(login_failed()));
    assert!(matches!(
        a.login("ghost", "x", None, None),
        Err(ServiceError::Busy { .. })
    ));
}

#[test]
fn sessions_expire_and_end_on_privilege_change() {
    let a = accounts(Timeouts {
        idle: Duration::from_millis(300),
        absolute: Duration::from_secs(60),
    });
    let secret = enrolled(&a, "petra");
    let code = format!("{:06}", totp::code(&secret, now_ms() / 1000 / totp::STEP));
    let LoginOutcome::Session(grant) = a.login("petra", PW, Some(&code), None).unwrap() else {
        panic!("logged in");
    };
    assert!(a.session(&grant.id, true).is_ok());
    std::thread::sleep(Duration::from_millis(400));
    assert!(a.session(&grant.id, true).is_err(), "idle timeout");
    let g2 = a
        .open_session(SessionKind::Account, "petra", Role::Operator, None)
        .unwrap();
    a.update(&admin(), "petra", Some(Role::Auditor), None)
        .unwrap();
    assert!(
        a.session(&g2.id, true).is_err(),
        "a role change ends sessions"
    );
    assert!(
        a.update(
            &Actor {
                name: "petra".into(),
                ..admin()
            },
            "petra",
            Some(Role::Admin),
            None
        )
        .is_err()
    );
}

#[test]
fn the_store_holds_no_session_id() {
    let a = accounts(Timeouts::default());
    let g = a
        .open_session(SessionKind::Account, "x", Role::Admin, None)
        .unwrap();
    for (k, v) in a
        .store
        .range(Space::Sessions, &[], None, false, 100)
        .unwrap()
    {
        assert!(!String::from_utf8_lossy(&k).contains(&g.id));
        assert!(!String::from_utf8_lossy(&v).contains(&g.id));
    }
}
