package vault

import (
	"bytes"
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The Store contract the vault relies on, on every store kind: a staged
// change is visible to Get at once, also while the commit carrying it is in
// flight; a commit that fails loses nothing staged; Commit returns once what
// was staged before it is durable; a power cut forgets only what was not.
func TestStoresKeepTheVaultContract(t *testing.T) {
	ctx := context.Background()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			s := &testStore{}
			s.backend = kind.new(t, s)
			want := func(id []byte, rec string, found bool) {
				t.Helper()
				got, ok, err := s.Get(id)
				if err != nil || ok != found || string(got) != rec {
					t.Fatalf("Get(%s) = %q, %v, %v; want %q, %v", id, got, ok, err, rec, found)
				}
			}
			a, b, c := []byte("u-a"), []byte("u-b"), []byte("u-c")
			s.Put(b, []byte("b0"))
			if _, err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}

			// Hold the next commit at the point where it makes its
			// batch durable.
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			s.FailCommit = func() error {
				once.Do(func() { close(entered); <-release })
				return nil
			}
			s.Put(a, []byte("a1"))
			s.Delete(b)
			first := make(chan error, 1)
			go func() { _, err := s.Commit(ctx); first <- err }()
			<-entered
			want(a, "a1", true) // in flight, not yet durable: still visible
			want(b, "", false)
			if _, ok := s.Committed(a); ok {
				t.Fatal("a change is durable before its commit flushed")
			}
			s.Put(c, []byte("c2")) // staged behind the commit in flight
			second := make(chan error, 1)
			go func() { _, err := s.Commit(ctx); second <- err }()
			close(release)
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if err := <-second; err != nil {
				t.Fatal(err)
			}
			for id, rec := range map[string]string{"u-a": "a1", "u-c": "c2"} {
				if got, ok := s.Committed([]byte(id)); !ok || string(got) != rec {
					t.Fatalf("after Commit returned, %s is %q, %v, not durable", id, got, ok)
				}
			}

			// A failed commit keeps its changes staged and visible, and
			// the next commit makes them durable.
			s.FailCommit = func() error { return errors.New("flush failed") }
			s.Put(a, []byte("a3"))
			if _, err := s.Commit(ctx); err == nil {
				t.Fatal("a failing flush gave a successful commit")
			}
			want(a, "a3", true)
			s.FailCommit = nil
			if _, err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Committed(a); !bytes.Equal(got, []byte("a3")) {
				t.Fatalf("the retried commit left %q durable", got)
			}

			// A power cut forgets what was staged, keeps what was durable.
			s.Put(a, []byte("a4"))
			s.Put(b, []byte("b4"))
			s.Crash()
			want(a, "a3", true)
			want(b, "", false)
			want(c, "c2", true)
		})
	}
}

// harnessTests are the tests TestOnTheRecordStore runs again on the record
// store: every test that builds a harness (TestEveryHarnessTestRunsOnEveryStore
// checks that none is missing).
var harnessTests = []func(*testing.T){
	// attempts_test.go
	TestConcurrentLoginStartsNeverExceedTheLimit,
	TestPowerCutsNeverGrantFreeGuesses,
	TestUnknownLockedAndWrongPasswordRepliesHaveTheSameShape,
	TestFakeRecordsAreStablePerUser,
	TestBusyVaultRefusesBeforeCounting,
	TestGuessesDuringALoginAreReportedToTheUser,
	// promise_test.go
	TestAWithheldKE3CannotReviveABurnedRecord,
	TestAReleaseTheUserNeverSawIsNotASuccess,
	TestACountedAttemptIsNeverAnsweredBusy,
	TestALockedReceiptSaysHowLongTheRecordCanComeBack,
	TestARebootEndsTheRevivalWindow,
	TestTheConfirmationRules,
	TestLoginRepliesHaveOneSizeWhateverTheLimits,
	TestUnknownUsersGetStableFakeTotals,
	TestACommandOutlivingItsSessionDoesNotDeadlock,
	TestUnauthenticatedJunkDoesNotKeepASessionAlive,
	TestASessionHasAnEnd,
	TestAFullSessionTableRefusesAKE3BeforeTheRevival,
	TestARetriedConfirmationIsANoOp,
	TestAConfirmationWhoseCommitFailedCountsOnce,
	// realm_test.go
	TestRealmRegisterEvaluateUnlockConfirm,
	// realm_counting_test.go
	TestRealmEvaluationIsCountedBeforeTheShareIsRead,
	TestRealmPowerCutsNeverGiveAFreeEvaluation,
	TestRealmWithheldUnlockCannotReviveABurnedRecord,
	TestRealmUnlockTheUserNeverConfirmedIsNotASuccess,
	TestRealmTagIsSingleUse,
	TestRealmFinalTicketRevivesOnce,
	TestRealmRevivalReportsTheOperatorsGuess,
	// realm_versions_test.go
	TestRealmReplayedRegistrationCannotReviveABurnedVersion,
	TestRealmPendingVersionIsErasedOnlyByACommit,
	TestRealmSessionOnAnErasedVersionCannotCommit,
	TestRealmCommitBelowCounterIsCounterOverLimit,
	// realm_material_test.go
	TestRealmRefusesAShareOffItsCommitments,
	TestRealmRefusesIdentityCommitmentsAndZeroShares,
	TestRealmRefusesAManifestForAnotherAccount,
	// realm_tickets_test.go
	TestRealmTicketPurposeIsChecked,
	TestRealmTicketQuotaPerUser,
	// realm_attack_counting_test.go, realm_attack_sessions_test.go
	TestRealmAttackRevivalShowsEveryReleasedEvaluation,
	TestRealmAttackPutVersionCommitEndsOtherSessions,
	// register_hold_test.go
	TestAHeldBackRegistrationCannotReviveABurnedRecord,
	TestAHeldBackRegistrationCannotReturnAfterADelete,
	// revival_race_test.go
	TestALockedReceiptIsNotErasedByARevivalItRaced,
	// register_replay_test.go
	TestReplayedRegistrationMessagesFailSafe,
	// input_test.go
	TestBadRequestsGetClearErrors,
	TestIdentityAndStatus,
	TestNewRefusesAnEmptyStoreUnlessCreating,
	TestProvisioningOverTheProtocol,
	// status_test.go
	TestStatusSignsTheRunningFirmware,
	// register_test.go
	TestRegistrationChannelRejectsTampering,
	TestRegisterFinishRejectsTamperingReplayAndLimits,
	TestRegisteringAnExistingUserIsRefusedButATombstoneMayBeReplaced,
	TestRegistrationUsesAFreshOPRFKey,
	// secrets_test.go
	TestNoSecretsInLogsOrErrors,
	// session_test.go
	TestKE3IsSingleUseAndExpires,
	TestReplayedKE1IsCountedAgain,
	TestSessionRejectsUnsealedReplayedAndReorderedCommands,
	TestChangePassword,
	TestChangeFinishNeedsChangeStartAndAllowedLimit,
	TestDeleteErasesAndAllowsANewRegistration,
	TestLoginOnAChangedRecordFails,
	// userstatus_test.go
	TestAUserStatusCountsNothing,
	TestAUserStatusAgreesWithTheReleaseReceipt,
	TestAUserStatusOfALockedRecord,
	TestAUserStatusOfAnUnknownUserLooksLikeARecord,
	TestAUserStatusEchoesTheRequest,
	// vault_test.go
	TestRegisterLoginRelease,
	TestWrongPasswordsAreCountedAndReported,
	TestLockoutAfterLimitErasesTheRecord,
	TestFinalAttemptWithTheRightPasswordRestoresTheRecord,
	TestFinalAttemptSecretsDoNotSurviveAReboot,
	TestFinalAttemptSecretsAreForgottenOnExpiry,
}

// TestOnTheRecordStore runs every harness test on applet/store's record
// store (on a memory block device that simulates power cuts), so that the
// vault's invariants are proved on the store the vault really runs on, not
// only on the memory store.
func TestOnTheRecordStore(t *testing.T) {
	for _, test := range harnessTests {
		t.Run(funcName(test), test)
	}
}

func funcName(f func(*testing.T)) string {
	name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
	return name[strings.LastIndexByte(name, '.')+1:]
}

// A harness test missing from harnessTests would silently run on the
// memory store only.
func TestEveryHarnessTestRunsOnEveryStore(t *testing.T) {
	listed := map[string]bool{}
	for _, f := range harnessTests {
		listed[funcName(f)] = true
	}
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || !callsNewHarness(fn) {
				continue
			}
			if !listed[fn.Name.Name] {
				t.Errorf("%s (%s) builds a harness but is not in harnessTests: it runs on the memory store only", fn.Name.Name, file)
			}
		}
	}
}

func callsNewHarness(fn *ast.FuncDecl) bool {
	found := false
	ast.Inspect(fn, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if id, ok := c.Fun.(*ast.Ident); ok && (id.Name == "newHarness" || id.Name == "newRealmSet") {
				found = true
			}
		}
		return !found
	})
	return found
}
