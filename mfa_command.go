package tokenauth

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// mfaCommand is `caddy token-auth-users mfa reset <id>`: it asks the
// running Caddy, through its admin API, to remove a user's second factors
// and revoke their sessions (for a person who lost their phone).
func mfaCommand() *cobra.Command {
	mfa := &cobra.Command{
		Use:   "mfa",
		Short: "Manages users' second factors in a running Caddy (through its admin API)",
		Args:  cobra.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	reset := &cobra.Command{
		Use:   "reset <id>",
		Short: "Removes a user's authenticator app and recovery codes, and signs them out everywhere",
		Long: `
Removes the TOTP set-up and recovery codes of a user of a token_auth realm,
and revokes every session of theirs, in the running Caddy (through its admin
API, so every instance sharing the realm's store sees it). The user signs in
with their password next time and may set up an app again.

  caddy token-auth-users mfa reset alice --realm default --address localhost:2019
`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			realm, _ := c.Flags().GetString("realm")
			address, _ := c.Flags().GetString("address")
			return runMFAReset(c.OutOrStdout(), address, realm, args[0])
		},
	}
	reset.Flags().String("realm", defaultRealm, "The token_auth realm")
	reset.Flags().String("address", "", "The admin API's address (default: Caddy's, localhost:2019)")
	mfa.AddCommand(reset)
	return mfa
}

// runMFAReset sends the reset to the admin API and prints what it did.
func runMFAReset(out io.Writer, address, realm, user string) error {
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, "", "")
	if err != nil {
		return err
	}
	uri := adminBase + url.PathEscape(realm) + "/mfa/" + url.PathEscape(user)
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodDelete, uri, nil, nil)
	if err != nil {
		return err // the admin API's error, with its message
	}
	defer resp.Body.Close()
	var answer struct {
		Revoked []string `json:"revoked"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return fmt.Errorf("reading the admin API's answer: %w", err)
	}
	_, err = fmt.Fprintf(out, "second factors of %q in realm %q removed; %d session(s) revoked\n", user, realm, len(answer.Revoked))
	return err
}
