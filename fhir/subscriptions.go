package fhir

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// A practice's Subscriptions: created through POST /fhir/Subscription
// (see create), read like any resource, and deleted.

// createSubscription answers POST /fhir/Subscription (practices).
func (s *Server) createSubscription(c *gin.Context, body []byte) error {
	res, err := s.svc.CreateSubscription(c.Request.Context(), principal(c), body)
	if err != nil {
		return err
	}
	s.created(c, http.StatusCreated, res, "subscribed")
	return nil
}

// remove answers DELETE /fhir/{type}/{id}: only Subscriptions are deleted.
func (s *Server) remove(c *gin.Context) error {
	typ, id := c.Param("type"), c.Param("id")
	if _, err := resourceFor(typ, interactionDelete); err != nil {
		return err
	}
	if err := s.svc.DeleteSubscription(c.Request.Context(), principal(c), id); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}
