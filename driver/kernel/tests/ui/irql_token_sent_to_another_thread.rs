// IRQL is a property of the processor a thread runs on: a token proven on one thread means
// nothing on another, so tokens are not `Send`.
use ktimer_kernel::irql::PassiveLevel;

fn main() {
    let passive = PassiveLevel::current().unwrap();
    std::thread::spawn(move || {
        let _still_passive = passive.still_passive();
    });
}
